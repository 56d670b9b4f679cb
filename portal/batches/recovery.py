"""Recovery from database state: what the periodic job does.

RQ runs a job at least once at best: a killed worker's job is noticed late, a
frozen worker can overlap a re-run, a Redis without persistence forgets
queued jobs. So the database decides: expired leases are reclaimed (as an
unexpected failure, retried with backoff up to the limit), and batches with
runnable items but no progress for BATCH_STALL_SECONDS get new lanes. Every
step is idempotent; two recoveries at once only do the work once.
"""
from datetime import timedelta

from flask import current_app

from portal.batches.counters import finish_if_done, lock_batch
from portal.batches.runner import release_lease
from portal.extensions import db
from portal.models import Batch, BatchItem
from portal.models.base import utcnow


def reclaim_expired_leases(now=None):
    """Items whose worker vanished: back to pending (or failed at the limit)."""
    now = now or utcnow()
    reclaimed = 0
    expired = db.session.execute(
        db.select(BatchItem.id).where(BatchItem.status == "running",
                                      BatchItem.lease_expires_at < now)).scalars().all()
    db.session.rollback()
    for item_id in expired:
        item = db.session.execute(
            db.select(BatchItem).where(BatchItem.id == item_id, BatchItem.status == "running",
                                       BatchItem.lease_expires_at < now)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)).scalar_one_or_none()
        if item is not None:
            release_lease(item, "The worker running this item stopped (lease expired).", now)
            reclaimed += 1
        db.session.commit()
    return reclaimed


def stalled_batches(now=None):
    """Ids of batches with runnable items and no progress for the stall time."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=current_app.config["BATCH_STALL_SECONDS"])
    last_seen = db.func.coalesce(Batch.progress_at, Batch.created_at)
    ids = db.session.execute(
        db.select(Batch.id).where(Batch.status.in_(("pending", "running")), Batch.pending > 0,
                                  last_seen < cutoff)).scalars().all()
    db.session.rollback()
    return ids


def finish_drained_batches():
    """Close batches whose last item ended in a transaction that could not close them."""
    ids = db.session.execute(
        db.select(Batch.id).where(Batch.status.in_(("running", "paused")), Batch.pending == 0,
                                  Batch.running == 0)).scalars().all()
    db.session.rollback()
    for batch_id in ids:
        batch = lock_batch(batch_id)
        if batch.status == "running":
            finish_if_done(batch)
        db.session.commit()
    return len(ids)


def recover(now=None):
    """One recovery pass; returns what it did and the batches that need lanes."""
    now = now or utcnow()
    reclaimed = reclaim_expired_leases(now)
    closed = finish_drained_batches()
    restart = stalled_batches(now)
    for batch_id in restart:  # mark progress so a second scheduler does not restart it again
        batch = lock_batch(batch_id)
        batch.progress_at = now
        db.session.commit()
    return {"reclaimed": reclaimed, "closed": closed, "restart": restart}
