"""Batch counters and the audit trail.

Counters move only through ``move`` while the batch row is locked, in the
same transaction as the item status change they count.
"""
from portal import events
from portal.batches.destinations import destination_counts
from portal.extensions import db
from portal.models import Batch, BatchEvent, BatchItem
from portal.models.base import utcnow

# Item status -> the batch counter that holds it.
COUNTER_OF = {"pending": "pending", "running": "running", "success": "success",
              "ignored": "ignored", "failed": "failed", "import_failed": "failed",
              "cancelled": "cancelled"}


def lock_batch(batch_id):
    """Lock the batch row for this transaction.

    FOR NO KEY UPDATE on PostgreSQL: rows inserted meanwhile with a foreign key
    to the batch (attempts, events) take KEY SHARE locks, which FOR UPDATE
    would conflict with, deadlocking two item transactions of one batch.
    """
    return db.session.execute(
        db.select(Batch).where(Batch.id == batch_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)).scalar_one_or_none()


def move(batch, old_status, new_status, count=1):
    old, new = COUNTER_OF[old_status], COUNTER_OF[new_status]
    setattr(batch, old, getattr(batch, old) - count)
    setattr(batch, new, getattr(batch, new) + count)
    batch.updated_at = utcnow()


def finish_if_done(batch, now=None):
    """Mark the batch finished once no item waits or runs; its items' destinations are counted then,
    once, so that the batch page never counts over a large batch's items."""
    if batch.pending == 0 and batch.running == 0 and batch.status in ("pending", "running", "paused"):
        batch.status = "finished"
        batch.finished_at = now or utcnow()
        db.session.flush()
        batch.destinations = [list(pair) for pair in destination_counts(batch)]
        add_event(batch.id, None, "finished", {"success": batch.success, "failed": batch.failed,
                                               "ignored": batch.ignored, "cancelled": batch.cancelled})
        events.batch_finished.send(batch)
        return True
    return False


def add_event(batch_id, user_id, action, detail=None):
    db.session.add(BatchEvent(batch_id=batch_id, user_id=user_id, action=action, detail=detail))


def counts_from_items(batch_id):
    """Counters derived from the items themselves (for checks and tests)."""
    rows = db.session.execute(
        db.select(BatchItem.status, db.func.count()).where(BatchItem.batch_id == batch_id)
        .group_by(BatchItem.status)).all()
    counts = {name: 0 for name in ("pending", "running", "success", "ignored", "failed", "cancelled")}
    for status, number in rows:
        counts[COUNTER_OF[status]] += number
    return counts
