"""The error workbook of a batch: its failed items in the template's own
layout, with the reason in an Error column (single) or row (per instance) and
the faulty cells highlighted, kept in the database as the batch's error file.

A batch made from a shared form uses the single-mode layout. The reasons are
written in the workbook's language, naming fields by the node's labels
(``item_errors``): the reader's when downloaded, the creator's when stored.
"""
from dataclasses import dataclass

from flask_babel import force_locale

from portal.batches import item_errors, own_values
from portal.batches.access import task_titles
from portal.batches.listing import open_failures
from portal.excel import layout
from portal.excel.compose import build_workbook
from portal.excel.values import form_cells
from portal.excel.writer import TaskValues
from portal.infra.extensions import db
from portal.models import BatchFile, BatchItem
from portal.models.base import utcnow



def error_filename(batch):
    """Built on the server from the batch number, never from user input."""
    return f"{batch.number}-errors.xlsx"


def layout_mode(batch):
    return batch.mode if batch.mode in layout.MODES else "single"


def failed_items(batch_id):
    """The batch's open failures (their tasks still wait for a decision)."""
    return db.session.execute(open_failures(
        batch_id, BatchItem.task_id, BatchItem.decision, BatchItem.error,
        BatchItem.field_errors, BatchItem.error_detail)).all()


@dataclass(frozen=True)
class ProcessCopy:
    key: str
    name: str
    version: int


@dataclass(frozen=True)
class NodeCopy:
    """What a workbook needs of a node, usable after the session let go of it."""
    id: int
    name: str
    fields: list
    process: ProcessCopy

    @property
    def form_fields(self):
        return [f for f in self.fields if f.get("type") != "table"]


@dataclass(frozen=True)
class ErrorSource:
    """Everything an error workbook shows, read in one short transaction."""
    batch_id: int
    mode: str
    node: NodeCopy
    shared: dict                 # the batch's own decision, for form-mode items
    rows: list                   # (task_id, decision, error, field_errors, error_detail)
    titles: dict
    own: dict                    # {task id: its own values}, for the fields a decision leaves out


def load_error_source(batch):
    """The batch's failed items and what surrounds them, or None when none failed."""
    rows = failed_items(batch.id)
    if not rows:
        return None
    node = batch.node
    return ErrorSource(
        batch_id=batch.id, mode=layout_mode(batch),
        node=NodeCopy(node.id, node.name, list(node.fields),
                      ProcessCopy(node.process.key, node.process.name, node.process.version)),
        shared=batch.shared_decision,
        rows=rows, titles=task_titles(row[0] for row in rows),
        own=own_values.by_task(node, [row[0] for row in rows]))


def task_values(source, row, locale, labels=None):
    """One failed item's values and error; ``labels``: the node's, in ``locale``.

    The fields its decision leaves out show the task's own values, as the item ran with
    them: uploaded again as it is, the file changes no value the batch did not set."""
    task_id, decision, error, field_errors, error_detail = row
    data = own_values.decision_over_own(source.node, decision or source.shared,
                                        source.own.get(task_id, {}))
    values = {"task_id": task_id, "title": source.titles.get(task_id),
              "action": layout.action_label(data.get("action"), locale),
              "comment": data.get("comment")}
    fields, tables = form_cells(source.node, data["form"], locale)
    values.update(fields)
    with force_locale(layout.language(locale)):
        text = item_errors.stored_text(error_detail, error, labels)
    return TaskValues(values, tables, error=text, faulty=frozenset(field_errors or ()))


def render(source, locale):
    """The workbook's bytes (no database access)."""
    with force_locale(layout.language(locale)):
        labels = item_errors.key_labels(source.node)
    tasks = (task_values(source, row, locale, labels) for row in source.rows)
    return build_workbook(source.node, source.mode, tasks, locale=locale, kind="errors",
                          batch_id=source.batch_id)


def build_error_workbook(batch, locale):
    """The workbook of the batch's open failures as they are now, or None when
    none is open. Ends the caller's transaction before rendering: on SQLite a
    transaction holds the write lock, and rendering a big workbook takes a while."""
    source = load_error_source(batch)
    db.session.rollback()
    return render(source, locale) if source is not None else None


def store_error_file(batch, content):
    """Replace the batch's error file (or drop it when ``content`` is None); the
    caller holds the batch row lock and commits."""
    old = batch.error_file
    if content is None:
        batch.error_file = None
        if old is not None:
            db.session.flush()
            db.session.delete(old)
        return None
    if old is None:
        old = BatchFile(batch_id=batch.id, kind="error")
        db.session.add(old)
        batch.error_file = old
    old.filename, old.content, old.created_at = error_filename(batch), content, utcnow()
    db.session.flush()
    return old
