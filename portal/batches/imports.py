"""Imports: an uploaded workbook -> checked entries -> a preview or a batch.

Each entry (a row or a sheet) is validated like a single approval
(``validate_decision``) and its task classified like any batch selection
(``creation.classify``: duplicates, tasks that are not the caller's pending
tasks at the node). The preview reports every problem per row or sheet; the
batch gets a pending item per valid entry, an ``import_failed`` item (with
its field errors, kept as messages so each reader reads them in their own
language: ``item_errors``) per invalid one, and ignored items as usual.

A corrected error workbook names its batch in its metadata: its rows may only
be tasks that failed in that batch, and the new batch records it as
``source_batch_id``.
"""
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _

from portal.batches import dispatch, own_values
from portal.batches.access import visible_batch
from portal.batches.creation import classify, create_batch
from portal.batches.listing import open_failures
from portal.errors import NotFound, ValidationFailed, reason_message
from portal.excel import UnusableFile, cells, reader, safety
from portal.infra.extensions import db
from portal.models import BatchItem
from portal.models.base import utcnow
from portal.models.uploads import PendingUpload
from portal.workflow.engine import validate_decision
from portal.workflow.forms import clean_value, is_blank, with_own_values

KEEP_UPLOADS = timedelta(days=1)
KEEP_PER_USER = 5            # a user's most recent unconfirmed uploads


@dataclass
class Checked:
    entry: reader.Entry
    errors: dict                 # field key -> message (reading and validation; Messages
                                 # where the portal made them, so an item can store them)
    decision: dict               # cleaned when valid, as written when not
    reason: str | None = None    # why the task cannot be taken (classify)
    importable: bool = True      # False: no task to attach an item to

    @property
    def valid(self):
        return self.importable and not self.errors and self.reason is None


def read(data, node, mode):
    """The upload's entries, with the limits of the app config."""
    config = current_app.config
    return reader.read_upload(data, node, mode, max_rows=config["MAX_IMPORT_ROWS"],
                              limits=safety.limits_from_config(config))


def source_batch(user, node, upload):
    """The batch an error workbook came from, or None for a template."""
    batch_id = upload.meta.batch_id
    if batch_id is None:
        return None
    try:
        batch = visible_batch(user, batch_id)
    except NotFound:
        batch = None
    if batch is None or batch.node_id != node.id:
        raise UnusableFile(_("This error workbook belongs to a batch that does not exist or "
                             "that you cannot see."))
    return batch


def _failed_task_ids(batch):
    return set(db.session.execute(open_failures(batch.id, BatchItem.task_id)).scalars())


def _validate(node, entry, own):
    """(errors, decision) of an entry. A cell left empty keeps the task's own value (``own``),
    required or not, and required fields are checked against it; the decision holds the
    values the entry gives (the rest are the task's own again when the item runs)."""
    errors = dict(entry.errors)
    written = {"action": entry.action, "comment": entry.comment,
               "form": cells.jsonable(entry.form)}
    try:
        cleaned = validate_decision(node, entry.action, entry.comment,
                                    with_own_values(node.fields, own, entry.form))
    except ValidationFailed as exc:
        errors.update(exc.errors)
        return errors, written
    if errors:
        return errors, written
    given = {key: value for key, value in cleaned.items() if not is_blank(entry.form.get(key))}
    return errors, {"action": entry.action, "comment": entry.comment or None, "form": given}


def _comparable(field, value):
    """A value as validation reads it (its text when it reads as nothing valid)."""
    try:
        return clean_value(field, value)
    except ValueError:
        return ("as written", repr(cells.jsonable(value)))


def untouched(node, entry, own):
    """Whether an entry says nothing the template did not: no action, no comment, and every
    value it holds the task's own (what the template was prefilled with). Such a row or sheet
    is skipped like an empty one."""
    if entry.action is not None or entry.comment is not None:
        return False
    fields = {f["key"]: f for f in node.fields}
    return all(is_blank(value) or (
        key in own and _comparable(fields[key], value) == _comparable(fields[key], own[key]))
        for key, value in entry.form.items() if key in fields)


def check(user, node, upload, source=None):
    """[Checked] in file order.

    Tasks are classified first, so that the values of a row naming a task the
    user may not open are never parsed nor stored: that row only says
    "unavailable". ``create_batch`` classifies again under lock anyway. The
    others are read against their tasks' own values: an untouched entry is left
    out and counted in ``upload.skipped``.
    """
    allowed = _failed_task_ids(source) if source is not None else None
    checked = [Checked(entry, dict(entry.errors), {}, importable=entry.task_id is not None)
               for entry in upload.entries]
    for item in checked:
        if allowed is not None and item.importable and item.entry.task_id not in allowed:
            item.errors["task_id"] = _("This task is not among the failed items of batch "
                                       "%(number)s.", number=source.number)
            item.importable = False
    takeable = [c for c in checked if c.importable]
    for item, (_task_id, reason) in zip(takeable, classify(
            user, node, [c.entry.task_id for c in takeable])):
        item.reason = reason
    own = own_values.by_task(node, [c.entry.task_id for c in takeable
                                    if c.reason != "unavailable"])
    kept = []
    for item in checked:
        if item.reason == "unavailable":
            item.errors, item.decision = {}, None
            kept.append(item)
            continue
        task_own = own.get(item.entry.task_id, {}) if item.importable else {}
        if item.importable and not item.errors and untouched(node, item.entry, task_own):
            upload.skipped += 1
            continue
        errors, item.decision = _validate(node, item.entry, task_own)
        item.errors = {**errors, **item.errors}
        kept.append(item)
    return kept


def preview(checked, skipped):
    """The dry run's answer (contract (docs/contract.md) section 4)."""
    invalid = []
    for item in checked:
        if item.valid:
            continue
        errors = dict(item.errors)
        if item.reason is not None:
            errors["task_id"] = reason_message(item.reason)
        row = {item.entry.kind: item.entry.where, "task_id": item.entry.task_id,
               "errors": errors}
        if item.reason is not None:
            row["reason"] = item.reason
        invalid.append(row)
    return {"valid": sum(1 for c in checked if c.valid), "invalid": invalid, "skipped": skipped}


def batch_rows(checked):
    """(task ids in file order, create_batch rows) of the entries that name a task."""
    task_ids, rows = [], {}
    for item in checked:
        if not item.importable:
            continue
        task_id = item.entry.task_id
        task_ids.append(task_id)
        if task_id in rows:
            continue                  # a duplicate: create_batch ignores it
        row = {"decision": item.decision, "source_ref": item.entry.source_ref}
        if item.errors:
            row["field_errors"] = item.errors
        rows[task_id] = row
    return task_ids, rows


def create_import_batch(user, node, mode, data, *, concurrency=None):
    """Read, check and turn an upload into a batch (the caller calls ``start``,
    then commits)."""
    _upload, source, checked = inspect(user, node, mode, data)
    task_ids, rows = batch_rows(checked)
    if not task_ids:
        raise UnusableFile(_("The file holds no decision to import: fill in at least one row "
                             "or sheet."))
    return create_batch(user, node, task_ids=task_ids, mode=mode, rows=rows,
                        concurrency=concurrency,
                        source_batch_id=source.id if source is not None else None)


def inspect(user, node, mode, data):
    """(upload, source batch or None, [Checked]): everything a preview shows."""
    upload = read(data, node, mode)
    source = source_batch(user, node, upload)
    return upload, source, check(user, node, upload, source)


def preview_upload(user, node, mode, data):
    """The dry run: nothing is written."""
    upload, _source, checked = inspect(user, node, mode, data)
    return preview(checked, upload.skipped)


def start(batch):
    """Before the caller's commit: lanes for runnable items, and the error
    workbook at once when rows already failed to import, enqueued once it commits."""
    dispatch.start_after_commit(batch)
    if batch.failed:
        dispatch.rebuild_error_file_after_commit(batch.id)


# --- uploads kept between preview and confirmation ----------------------------------

def keep_upload(user, node, mode, data, filename):
    """Store a checked upload for its confirmation; purge abandoned ones (older
    than a day, or beyond the user's few most recent)."""
    db.session.execute(db.delete(PendingUpload).where(
        PendingUpload.created_at < utcnow() - KEEP_UPLOADS))
    older = (db.select(PendingUpload.id).where(PendingUpload.user_id == user.id)
             .order_by(PendingUpload.id.desc()).offset(KEEP_PER_USER - 1))
    db.session.execute(db.delete(PendingUpload).where(
        PendingUpload.id.in_(older.scalar_subquery())).execution_options(
        synchronize_session=False))
    upload = PendingUpload(user_id=user.id, node_id=node.id, mode=mode, content=data,
                           filename=(filename or "upload.xlsx")[:200])
    db.session.add(upload)
    db.session.flush()
    return upload


def kept_upload(user, upload_id):
    """The user's own kept upload; NotFound for anyone else's or a used one."""
    upload = db.session.get(PendingUpload, upload_id)
    if upload is None or upload.user_id != user.id:
        raise NotFound(_("This upload is no longer available. Please upload the file again."))
    return upload
