"""Pause, resume, cancel and retry: each one transaction under the batch row lock.

The caller commits, then asks ``dispatch`` for lanes when work became runnable.
"""
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import update

from portal.batches.counters import add_event, finish_if_done, lock_batch, move
from portal.extensions import db
from portal.models import BatchItem, Task
from portal.models.base import utcnow
from portal.workflow.errors import Conflict


def _locked(batch):
    return lock_batch(batch.id)


def pause(batch, user):
    batch = _locked(batch)
    if batch.status not in ("pending", "running"):
        raise Conflict(_("Only a pending or running batch can be paused."))
    batch.status, batch.updated_at = "paused", utcnow()
    add_event(batch.id, user.id, "paused")
    return batch


def resume(batch, user):
    batch = _locked(batch)
    if batch.status != "paused":
        raise Conflict(_("Only a paused batch can be resumed."))
    batch.status, batch.updated_at = "running", utcnow()
    batch.progress_at = utcnow()
    finish_if_done(batch)
    add_event(batch.id, user.id, "resumed")
    return batch


def cancel(batch, user):
    """Pending items become cancelled and their tasks are unlocked; running ones finish."""
    batch = _locked(batch)
    if batch.status not in ("pending", "running", "paused"):
        raise Conflict(_("This batch can no longer be cancelled."))
    now = utcnow()
    pending = db.select(BatchItem.task_id).where(BatchItem.batch_id == batch.id,
                                                 BatchItem.status == "pending")
    db.session.execute(update(Task).where(Task.id.in_(pending), Task.lock_batch_id == batch.id)
                       .values(lock_holder_id=None, lock_batch_id=None, lock_expires_at=None)
                       .execution_options(synchronize_session=False))
    count = db.session.execute(
        update(BatchItem).where(BatchItem.batch_id == batch.id, BatchItem.status == "pending")
        .values(status="cancelled", error_kind="cancelled", finished_at=now)
        .execution_options(synchronize_session=False)).rowcount
    move(batch, "pending", "cancelled", count)
    batch.status = "cancelled"
    batch.finished_at = now if batch.running == 0 else None
    add_event(batch.id, user.id, "cancelled", {"items": count})
    return batch


FAILED_STATUSES = ("failed", "import_failed")


def at_retry_limit(item):
    """A failed item that used up its retries: its task is back with people."""
    return (item.status in FAILED_STATUSES
            and item.retry_count >= current_app.config["BATCH_RETRY_LIMIT"])


def retryable(item, batch):
    """Whether a person may retry this item now."""
    return item.status in FAILED_STATUSES and not at_retry_limit(item) and batch.status != "cancelled"


def retry(batch, user, item_ids=None):
    """Retry the given failed items (or all failed ones) that are under the limit.

    Returns ``(batch, retried, at_limit)``. The approval still runs as the
    batch's creator, the task's assignee.
    """
    batch = _locked(batch)
    if batch.status == "cancelled":
        raise Conflict(_("A cancelled batch cannot be retried."))
    query = db.select(BatchItem).where(BatchItem.batch_id == batch.id,
                                       BatchItem.status.in_(FAILED_STATUSES))
    if item_ids is not None:
        query = query.where(BatchItem.id.in_(item_ids))
    items = db.session.execute(query.with_for_update()).scalars().all()
    now, retried, at_limit = utcnow(), [], 0
    for item in items:
        if at_retry_limit(item):
            at_limit += 1
            continue
        move(batch, item.status, "pending")
        item.status, item.retry_count = "pending", item.retry_count + 1
        item.next_attempt_at, item.finished_at = None, None
        item.retried_by_id, item.retried_at = user.id, now
        retried.append(item)
    task_ids = [item.task_id for item in retried]
    for start in range(0, len(task_ids), 900):
        db.session.execute(
            update(Task).where(Task.id.in_(task_ids[start:start + 900]), Task.status == "pending",
                               Task.lock_holder_id.is_(None))
            .values(lock_holder_id=batch.created_by_id, lock_batch_id=batch.id, lock_expires_at=None)
            .execution_options(synchronize_session=False))
    if retried:
        if batch.status == "finished":
            batch.status, batch.finished_at = "running", None
        batch.progress_at = now
        add_event(batch.id, user.id, "retried",
                  {"items": [i.id for i in retried][:1000], "count": len(retried)})
    return batch, len(retried), at_limit
