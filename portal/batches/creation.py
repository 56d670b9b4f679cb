"""Creating a batch from selected task ids, from a query, or from import rows.

Everything is checked before anything is written: the shared form is
validated against the node (422 names the fields), then each task is
classified in bulk. Eligible tasks get a pending item and are locked to the
batch; the others get an ignored item that says why. Items are inserted in
bulk, so a 20,000-task batch is one request of a few seconds.
"""
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import exists, insert, update

from portal.batches.access import MAX_ID, is_db_id
from portal.batches.counters import add_event
from portal.extensions import db
from portal.models import Batch, BatchItem, Countersign, Instance, Node, Task
from portal.models.base import utcnow
from portal.workflow.engine import (
    TaskState, blocking_reason, check_decision, pending_tasks_query, validate_decision)
from portal.workflow.errors import CONFLICT_MESSAGES, NotFound, ValidationFailed

CHUNK = 900  # stays under SQLite's bound-parameter limit


def _chunks(values, size=CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def get_node(node_id):
    node = db.session.get(Node, node_id) if is_db_id(node_id) else None
    if node is None:
        raise NotFound(_("Node not found."))
    return node


def parse_task_ids(raw):
    """Task ids from JSON or a form; ValidationFailed when they are not integers.

    Any integer that fits the id column is accepted: one that names no task
    becomes an ignored item ("gone"), as the contract asks.
    """
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed({"task_ids": _("Choose at least one task.")})
    ids = []
    for value in raw:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_ID:
            raise ValidationFailed({"task_ids": _("Task ids must be whole numbers.")})
        ids.append(value)
    return ids


def _task_states(task_ids, *, lock):
    """{task_id: (node_id, TaskState)} for the ids that exist, read in bulk."""
    pending_countersign = exists().where(Countersign.task_id == Task.id,
                                         Countersign.status == "pending")
    states = {}
    for chunk in _chunks(sorted(set(task_ids))):
        query = (db.select(Task.id, Task.node_id, Task.status, Instance.status, Instance.suspended,
                           Task.assignee_user_id, Task.assignee_role, pending_countersign,
                           Task.lock_holder_id, Task.lock_batch_id, Task.lock_expires_at)
                 .join(Instance, Task.instance_id == Instance.id).where(Task.id.in_(chunk)))
        if lock:  # in id order, so two creations over the same tasks cannot deadlock
            query = query.order_by(Task.id).with_for_update(of=Task)
        for row in db.session.execute(query):
            states[row[0]] = (row[1], TaskState(*row[2:]))
    return states


def classify(user, node, task_ids, *, lock=False):
    """[(task_id, reason or None)] in the given order; duplicates are ignored."""
    states = _task_states(task_ids, lock=lock)
    now, seen, result = utcnow(), set(), []
    for task_id in task_ids:
        if task_id in seen:
            result.append((task_id, "duplicate"))
            continue
        seen.add(task_id)
        node_id, state = states.get(task_id, (None, None))
        reason = blocking_reason(state, user, now=now)
        if reason is None and node_id != node.id:
            reason = "wrong_node"
        result.append((task_id, reason))
    return result


def query_task_ids(user, node, title_contains=None):
    query = pending_tasks_query(user, node_id=node.id, title_contains=title_contains).where(
        Task.lock_batch_id.is_(None))  # already in a batch: not offered again
    return list(db.session.execute(query.with_only_columns(Task.id).order_by(Task.id)).scalars())


def preview(user, node, task_ids):
    """Eligibility counts before confirming: {"eligible": n, "reasons": {code: n}}."""
    counts = {}
    for _task_id, reason in classify(user, node, task_ids):
        counts[reason or "eligible"] = counts.get(reason or "eligible", 0) + 1
    return {"total": len(task_ids), "eligible": counts.pop("eligible", 0), "reasons": counts}


def reason_message(reason):
    if reason == "duplicate":
        return _("The task appears more than once.")
    return str(CONFLICT_MESSAGES.get(reason, reason))


def _concurrency(value):
    default = current_app.config["BATCH_CONCURRENCY"]
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationFailed({"concurrency": _("Enter a whole number.")})
    if not 1 <= number <= 50:
        raise ValidationFailed({"concurrency": _("Between 1 and 50.")})
    return number


def create_batch(user, node, *, task_ids, action=None, comment=None, form=None, concurrency=None,
                 mode="form", rows=None, filter=None, source_batch_id=None):
    """Create the batch and its items; returns the batch (status pending).

    ``rows`` (imports) maps a task id to its own decision:
    ``{"post_data": {...}, "source_ref": "..."}`` or, for rows that did not
    parse, ``{"error": "...", "field_errors": {...}, "source_ref": "..."}``.
    """
    concurrency = _concurrency(concurrency)
    if mode == "form":
        cleaned_form = validate_decision(node, action, comment, form)
    else:
        errors = check_decision(action, comment) if action is not None else {}
        if errors:
            raise ValidationFailed(errors)
        cleaned_form = None
    if not task_ids:
        raise ValidationFailed({"task_ids": _("Choose at least one task.")})

    now = utcnow()
    batch = Batch(app_version_id=node.process_id, node_id=node.id, status="pending", mode=mode,
                  action=action, comment=comment or None, post_data=cleaned_form, filter=filter,
                  concurrency=concurrency, created_by_id=user.id, created_at=now, updated_at=now,
                  source_batch_id=source_batch_id)
    db.session.add(batch)
    db.session.flush()
    batch.number = f"B{now:%Y%m%d}-{batch.id:06d}"

    rows = rows or {}
    messages = {}  # one translated message per reason, not one per item
    items, eligible = [], []
    counts = {"pending": 0, "ignored": 0, "failed": 0}
    for task_id, reason in classify(user, node, task_ids, lock=True):
        row = rows.get(task_id, {}) if reason != "duplicate" else {}
        item = {"batch_id": batch.id, "task_id": task_id, "source_ref": row.get("source_ref"),
                "post_data": row.get("post_data"), "retry_count": 0, "attempts": 0}
        if reason is not None:
            if reason not in messages:
                messages[reason] = reason_message(reason)
            item.update(status="ignored", error_kind=reason, error=messages[reason],
                        finished_at=now)
            counts["ignored"] += 1
        elif row.get("error"):
            item.update(status="import_failed", error_kind="validation", error=row["error"],
                        field_errors=row.get("field_errors"), finished_at=now)
            counts["failed"] += 1
        else:
            item.update(status="pending")
            counts["pending"] += 1
            eligible.append(task_id)
        items.append(item)
    if items:
        db.session.execute(insert(BatchItem), items)
    for chunk in _chunks(eligible):
        db.session.execute(update(Task).where(Task.id.in_(chunk)).values(
            lock_holder_id=user.id, lock_batch_id=batch.id, lock_expires_at=None))
    batch.total = len(items)
    batch.pending, batch.ignored, batch.failed = counts["pending"], counts["ignored"], counts["failed"]
    if batch.pending == 0:
        batch.status, batch.finished_at = "finished", now
    add_event(batch.id, user.id, "created", {"total": batch.total, "mode": mode})
    db.session.flush()
    return batch
