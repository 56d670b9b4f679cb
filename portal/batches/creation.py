"""Creating a batch from selected task ids, from a query, or from import rows.

Everything is checked before anything is written: the shared form is
validated against the node (422 names the fields), then each task is
classified in bulk. Eligible tasks get a pending item and are locked to the
batch; the others get an ignored item that says why. Items are inserted in
bulk, so a 20,000-task batch is one request of a few seconds.
"""
import re

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import exists

from portal.batches import item_errors, lifecycle, own_values
from portal.batches.audit import add_event
from portal.errors import NotFound, ValidationFailed
from portal.infra.extensions import db
from portal.models import Batch, Countersign, Instance, Node, Task
from portal.models.base import MAX_ID, chunks, is_db_id, utcnow
from portal.models.batches import MAX_CONCURRENCY
from portal.workflow.engine import check_decision, validate_decision
from portal.workflow.visibility import TaskState, blocking_reason, may_open, pending_tasks_query

def get_node(node_id):
    node = db.session.get(Node, node_id) if is_db_id(node_id) else None
    if node is None:
        raise NotFound(_("Node not found."))
    return node


TASK_ID_TEXT = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only; int() takes "²" and "١"


def max_batch_size():
    """Most tasks one batch may hold: the same cap for pages, API and imports."""
    return current_app.config["MAX_IMPORT_ROWS"]


def check_batch_size(count):
    if count > max_batch_size():
        raise ValidationFailed({"task_ids": _("At most %(n)s tasks per batch.",
                                              n=max_batch_size())})


def parse_task_ids(raw):
    """Task ids from JSON or a form; ValidationFailed when they are not integers
    (ASCII digits in text, within the id columns' range) or more than a batch may hold.

    Any integer is accepted as a choice: one that names no task the user may
    open becomes an ignored item ("unavailable"), as the contract asks. The
    count is checked before any value is converted.
    """
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed({"task_ids": _("Choose at least one task.")})
    check_batch_size(len(raw))
    ids = []
    for value in raw:
        if isinstance(value, str) and TASK_ID_TEXT.fullmatch(value.strip()):
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_ID:
            raise ValidationFailed({"task_ids": _("Task ids must be whole numbers.")})
        ids.append(value)
    return ids


def _task_states(user, task_ids, *, lock):
    """{task_id: (node_id, TaskState, user may open it)} for the ids that exist, read in
    bulk; ids no row can have are not asked for."""
    pending_countersign = exists().where(Countersign.task_id == Task.id,
                                         Countersign.status == "pending")
    signer = exists().where(Countersign.task_id == Task.id, Countersign.user_id == user.id)
    states = {}
    for chunk in chunks(sorted({i for i in task_ids if is_db_id(i)})):
        query = (db.select(Task.id, Task.node_id, Task.completed_by_id, signer,
                           Task.status, Instance.status, Instance.suspended,
                           Task.assignee_user_id, Task.assignee_role, pending_countersign,
                           Task.lock_holder_id, Task.lock_batch_id, Task.lock_expires_at, Task.node_id)
                 .join(Instance, Task.instance_id == Instance.id).where(Task.id.in_(chunk)))
        if lock:  # in id order, so two creations over the same tasks cannot deadlock
            query = query.order_by(Task.id).with_for_update(of=Task)
        for row in db.session.execute(query):
            state = TaskState(*row[4:])
            states[row[0]] = (row[1], state,
                              may_open(user, state, completed_by_id=row[2], signer=row[3]))
    return states


def classify(user, node, task_ids, *, lock=False):
    """[(task_id, reason or None)] in the given order; duplicates are ignored.

    A task the user may not open (``visibility.can_view_task``) is "unavailable"
    whatever its state, so that a batch tells nothing about other people's
    tasks: not whether they exist, whose they are or whether they are done.
    """
    states = _task_states(user, task_ids, lock=lock)
    now, seen, result = utcnow(), set(), []
    for task_id in task_ids:
        if task_id in seen:
            result.append((task_id, "duplicate"))
            continue
        seen.add(task_id)
        node_id, state, visible = states.get(task_id, (None, None, False))
        if not visible:
            result.append((task_id, "unavailable"))
            continue
        reason = blocking_reason(state, user, now=now)
        if reason is None and node_id != node.id:
            reason = "wrong_node"
        result.append((task_id, reason))
    return result


def all_pending_selection(user, node, title_contains=None):
    """(ids, stored filter) of "all my pending tasks at this node", optionally
    those whose title contains ``title_contains``; tasks already in a batch are
    not offered again. The filter is kept on the batch: how its ids were chosen."""
    title = title_contains or None
    return query_task_ids(user, node, title), {"all_pending": True, "title_contains": title}


def selection_errors(task_ids, filter=None):
    """{"task_ids": why} when the selection cannot make a batch: empty, or more
    than a batch may hold. Pages and API alike."""
    if not task_ids:
        if filter and filter.get("all_pending"):
            return {"task_ids": _("There are no pending tasks of yours at this node that match.")}
        return {"task_ids": _("Choose at least one task.")}
    if len(task_ids) > max_batch_size():
        return {"task_ids": _("At most %(n)s tasks per batch.", n=max_batch_size())}
    return {}


def query_task_ids(user, node, title_contains=None):
    query = pending_tasks_query(user, node_id=node.id, title_contains=title_contains).where(
        Task.lock_batch_id.is_(None))  # already in a batch: not offered again
    return list(db.session.execute(query.with_only_columns(Task.id).order_by(Task.id)).scalars())


def preview(user, node, task_ids, *, holders=False):
    """Eligibility counts before confirming: {"eligible": n, "reasons": {code: n}}; with
    ``holders`` also {"holders": {field key: eligible tasks holding a value of their own}}
    (what setting that field for all would replace)."""
    counts, eligible = {}, []
    for task_id, reason in classify(user, node, task_ids):
        counts[reason or "eligible"] = counts.get(reason or "eligible", 0) + 1
        if reason is None:
            eligible.append(task_id)
    result = {"total": len(task_ids), "eligible": counts.pop("eligible", 0), "reasons": counts}
    if holders:
        result["holders"] = own_values.holders(node, eligible)
    return result


def _concurrency(value, errors):
    """The batch's concurrency (the default when not given); a problem goes
    into ``errors``."""
    if value in (None, ""):
        return current_app.config["BATCH_CONCURRENCY"]
    try:
        number = int(value)
    except (TypeError, ValueError):
        errors["concurrency"] = _("Enter a whole number.")
        return None
    if not 1 <= number <= MAX_CONCURRENCY:
        errors["concurrency"] = _("Between 1 and %(n)s.", n=MAX_CONCURRENCY)
    return number


def _checked_decision(node, mode, action, comment, form, errors):
    """The cleaned shared form (form mode) or None; problems go into ``errors``.

    The shared form sets only the fields it holds a value for; every other field keeps
    each task's own value, and required fields are checked per item against it when the
    item runs (``decide(keep_own=True)``). An import's rows carry their own decisions;
    its batch-wide ones are optional."""
    if mode != "form":
        errors.update(check_decision(action, comment) if action is not None else {})
        return None
    try:
        return validate_decision(node, action, comment, form, required=False)
    except ValidationFailed as exc:
        errors.update(exc.errors)
        return None


def _checked_request(node, task_ids, action, comment, form, concurrency, mode, filter):
    """(concurrency, cleaned shared form or None, {key: problem}) of a batch request."""
    errors = {}
    concurrency = _concurrency(concurrency, errors)
    cleaned_form = _checked_decision(node, mode, action, comment, form, errors)
    errors.update(selection_errors(task_ids, filter))
    return concurrency, cleaned_form, errors


def request_errors(node, *, task_ids, action=None, comment=None, form=None, concurrency=None,
                   mode="form", filter=None):
    """What ``create_batch`` would refuse in this request ({key: problem}), writing nothing:
    for a page that found problems of its own and reports them all at once."""
    return _checked_request(node, task_ids, action, comment, form, concurrency, mode, filter)[2]


def create_batch(user, node, *, task_ids, action=None, comment=None, form=None, concurrency=None,
                 mode="form", rows=None, filter=None, source_batch_id=None):
    """Create the batch and its items; returns the batch (status pending).

    ``rows`` (imports) maps a task id to its own decision:
    ``{"decision": {...}, "source_ref": "..."}``; a row that did not parse also
    holds ``"field_errors"``: {field key: message} (Messages, message data or
    text) and becomes an ``import_failed`` item. (A row may give its own
    ``"error"`` text instead, stored as it is.)
    """
    concurrency, cleaned_form, errors = _checked_request(node, task_ids, action, comment, form,
                                                         concurrency, mode, filter)
    if errors:  # every problem at once, before anything is written
        only_selection = set(errors) == {"task_ids"}
        raise ValidationFailed(errors, errors["task_ids"] if only_selection else None)

    now = utcnow()
    batch = Batch(process_id=node.process_id, node_id=node.id, status="pending", mode=mode,
                  action=action, comment=comment or None, shared_form=cleaned_form, filter=filter,
                  concurrency=concurrency, created_by_id=user.id, created_at=now, updated_at=now,
                  source_batch_id=source_batch_id)
    db.session.add(batch)
    db.session.flush()
    batch.number = f"B{now:%Y%m%d}-{batch.id:06d}"

    rows = rows or {}
    ignored = {}  # one Failure (and its English text) per reason, not one per item
    entries = []
    for task_id, reason in classify(user, node, task_ids, lock=True):
        row = rows.get(task_id, {}) if reason != "duplicate" else {}
        columns = {"task_id": task_id, "source_ref": row.get("source_ref"),
                   "decision": row.get("decision")}
        if reason is not None:
            if reason not in ignored:
                ignored[reason] = item_errors.ignored(reason)
            entries.append((columns, "ignored", ignored[reason]))
        elif row.get("field_errors") or row.get("error"):
            entries.append((columns, "import_failed", _import_failure(row)))
        else:
            entries.append((columns, "pending", None))
    lifecycle.add_items(batch, node, entries, now)
    add_event(batch.id, user.id, "created", _created_detail(batch, node, cleaned_form))
    db.session.flush()
    if batch.pending == 0:  # nothing to run: every item was ignored or failed its import
        lifecycle.finish_if_done(batch, now)
    return batch


def _created_detail(batch, node, cleaned_form):
    """The audit entry of a new batch; a shared form's one also names the fields it set for
    every task (in the node's order), the others having kept each task's own value."""
    detail = {"total": batch.total, "mode": batch.mode}
    if cleaned_form is not None:
        detail["set_fields"] = [f["key"] for f in node.fields if f["key"] in cleaned_form]
    return detail


def _import_failure(row):
    """Why a row did not import (an ``item_errors.Failure``): its field errors as messages, or
    the text the row brings instead, kept as it is."""
    if row.get("field_errors"):
        return item_errors.invalid(row["field_errors"])
    return item_errors.Failure(item_errors.VALIDATION, item_errors.VALIDATION, str(row["error"]))
