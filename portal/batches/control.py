"""Pause, resume, cancel and retry: each one transaction under the batch row lock.

The caller commits, then asks ``dispatch`` for lanes when work became runnable.
"""
from flask_babel import gettext as _

from portal import events
from portal.batches import lifecycle
from portal.batches.audit import add_event
from portal.errors import Conflict, ValidationFailed
from portal.infra.extensions import db
from portal.models import BatchItem
from portal.models.base import utcnow
from portal.models.batches import FAILED_ITEM_STATUSES, OPEN_BATCH_STATUSES


def _locked(batch):
    return lifecycle.lock_batch(batch.id)


def pause(batch, user):
    batch = _locked(batch)
    if not batch.is_active:
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
    lifecycle.finish_if_done(batch)
    add_event(batch.id, user.id, "resumed")
    return batch


def cancel(batch, user):
    """Pending items become cancelled and their tasks are unlocked; running ones finish."""
    batch = _locked(batch)
    if batch.status not in OPEN_BATCH_STATUSES:
        raise Conflict(_("This batch can no longer be cancelled."))
    now = utcnow()
    count = lifecycle.cancel_pending(batch, now)
    batch.status = "cancelled"
    batch.finished_at = now if batch.running == 0 else None
    add_event(batch.id, user.id, "cancelled", {"items": count})
    events.batch_cancelled.send(batch)
    return batch


def at_retry_limit(item):
    """A failed item that used up its retries: its task is back with people."""
    return item.status in FAILED_ITEM_STATUSES and item.retry_count >= lifecycle.retry_limit()


def batch_accepts_retries(batch):
    """A cancelled batch runs nothing again."""
    return batch.status != "cancelled"


# A failure of the item's own values: running it again fails again, so it is
# corrected (``corrections``), never retried as it is.
DATA_ERROR = "validation"


def retryable(item, batch):
    """Whether a person may retry this item now: it failed for a cause a new
    run can get past (an unexpected error, a user error), under the limit."""
    return (item.status in FAILED_ITEM_STATUSES and item.error_kind != DATA_ERROR
            and not at_retry_limit(item) and batch_accepts_retries(batch))


def _failures_a_person_may_retry(batch_id):
    """The batch's failed items (import failures included) that ``retryable`` lets a person
    retry: not a failure of their own values, under the retry limit."""
    return db.select(BatchItem).where(
        BatchItem.batch_id == batch_id, BatchItem.status.in_(FAILED_ITEM_STATUSES),
        BatchItem.error_kind.is_distinct_from(DATA_ERROR),
        BatchItem.retry_count < lifecycle.retry_limit())


def retry_all_count(batch):
    """How many items "retry all failed" would run again now (0: do not offer it)."""
    if batch.failed == 0 or not batch_accepts_retries(batch):
        return 0
    return db.session.execute(db.select(db.func.count()).select_from(
        _failures_a_person_may_retry(batch.id).subquery())).scalar()


# Retry takes the ids in one SQL IN list; for more, retrying every failed
# item (no ids) is what the caller wants anyway.
MAX_RETRY_IDS = 5000


def retry(batch, user, item_ids=None):
    """Retry the given failed items (or all failed ones) that are under the limit.

    Returns ``(batch, retried, at_limit, needs_correction)``: items at the
    limit and items whose values failed stay failed. The approval still runs
    as the batch's creator, the task's assignee.
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
    retried, at_limit, needs_correction = [], 0, 0
    for item in failed:
        if retryable(item, batch):
            retried.append(item)
        elif item.error_kind == DATA_ERROR:
            needs_correction += 1
        else:
            at_limit += 1
    lifecycle.retry(batch, retried, utcnow(), retried_by=user)
    if retried:
        add_event(batch.id, user.id, "retried",
                  {"items": [i.id for i in retried][:1000], "count": len(retried)})
        events.items_retried.send(batch.id, count=len(retried), automatic=False)
    return batch, len(retried), at_limit, needs_correction
