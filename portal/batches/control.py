"""Pause, resume, cancel and retry: each one transaction under the batch row lock.

The caller commits, then asks ``dispatch`` for lanes when work became runnable.
"""
from flask_babel import gettext as _
from sqlalchemy import update

from portal.batches import items
from portal.batches.counters import add_event, finish_if_done, lock_batch, move
from portal.extensions import db
from portal.models import BatchItem
from portal.models.base import utcnow
from portal.models.batches import FAILED_ITEM_STATUSES
from portal.errors import Conflict, ValidationFailed


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
    items.release_tasks_of_pending(batch)
    count = db.session.execute(
        update(BatchItem).where(BatchItem.batch_id == batch.id, BatchItem.status == "pending")
        .values(status="cancelled", error_kind="cancelled", finished_at=now)
        .execution_options(synchronize_session=False)).rowcount
    move(batch, "pending", "cancelled", count)
    batch.status = "cancelled"
    batch.finished_at = now if batch.running == 0 else None
    add_event(batch.id, user.id, "cancelled", {"items": count})
    return batch


def at_retry_limit(item):
    """A failed item that used up its retries: its task is back with people."""
    return item.status in FAILED_ITEM_STATUSES and item.retry_count >= items.retry_limit()


def batch_accepts_retries(batch):
    """A cancelled batch runs nothing again."""
    return batch.status != "cancelled"


def retryable(item, batch):
    """Whether a person may retry this item now."""
    return (item.status in FAILED_ITEM_STATUSES and not at_retry_limit(item)
            and batch_accepts_retries(batch))


def may_retry_all(batch):
    """Whether "retry all failed" is worth offering: failures in a batch that
    accepts retries (items at the limit stay failed)."""
    return batch.failed > 0 and batch_accepts_retries(batch)


# Retry takes the ids in one SQL IN list; for more, retrying every failed
# item (no ids) is what the caller wants anyway.
MAX_RETRY_IDS = 5000


def retry(batch, user, item_ids=None):
    """Retry the given failed items (or all failed ones) that are under the limit.

    Returns ``(batch, retried, at_limit)``. The approval still runs as the
    batch's creator, the task's assignee.
    """
    if item_ids is not None and len(item_ids) > MAX_RETRY_IDS:
        raise ValidationFailed({"item_ids": _(
            "At most %(n)s item ids; send none to retry every failed item.", n=MAX_RETRY_IDS)})
    batch = _locked(batch)
    if not batch_accepts_retries(batch):
        raise Conflict(_("A cancelled batch cannot be retried."))
    query = db.select(BatchItem).where(BatchItem.batch_id == batch.id,
                                       BatchItem.status.in_(FAILED_ITEM_STATUSES))
    if item_ids is not None:
        query = query.where(BatchItem.id.in_(item_ids))
    failed = db.session.execute(query.with_for_update()).scalars().all()
    now, retried = utcnow(), []
    for item in failed:
        if not at_retry_limit(item):
            items.requeue(batch, item, now, retried_by=user)
            retried.append(item)
    items.hold_tasks(batch, [item.task_id for item in retried], only_free=True)
    if retried:
        items.reopen(batch, now)
        add_event(batch.id, user.id, "retried",
                  {"items": [i.id for i in retried][:1000], "count": len(retried)})
    return batch, len(retried), len(failed) - len(retried)
