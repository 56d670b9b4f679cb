"""How far a batch is: percent done, time left, the status people see.

Counts come from the batch row's counters, never from counting items; the
time left from the runs that finished in the last two minutes.
"""
from datetime import timedelta

from portal.infra.extensions import db
from portal.models import BatchItemAttempt
from portal.models.base import utcnow
from portal.models.batches import FINISHED_WITH_ERRORS

COUNTER_NAMES = ("total", "pending", "running", "success", "failed", "ignored", "cancelled")


def eta_seconds(remaining, processed, started_at, now):
    """Seconds until ``remaining`` items are done at the rate seen since ``started_at``.

    None while nothing has been processed yet (no rate to go by) or when
    nothing remains to do.
    """
    if remaining <= 0 or processed <= 0 or started_at is None:
        return None
    elapsed = (now - started_at).total_seconds()
    if elapsed <= 0:
        return None
    return int(round(remaining * elapsed / processed))


def progress_percent(batch):
    """Share of the batch's items that reached an end state, 0-100."""
    if not batch.total:
        return 100
    remaining = batch.pending + batch.running
    return int((batch.total - remaining) * 100 // batch.total)


def status_key(batch):
    """The status people see: a finished batch with failures is its own status."""
    return FINISHED_WITH_ERRORS if batch.with_errors else batch.status


# The rate an ETA goes by: items finished in this window. A batch's own
# average since it started says nothing after a pause, or when a few items are
# retried on a batch that ran last week.
RATE_WINDOW = timedelta(minutes=2)
RATE_SAMPLE = 500   # the latest runs are enough for a rate; the page never counts a batch


def recent_rate(batch_id, now):
    """(runs that finished in the window, at most RATE_SAMPLE of the latest, and
    when the first of them began), or None when none did."""
    starts = db.session.execute(
        db.select(BatchItemAttempt.started_at)
        .where(BatchItemAttempt.batch_id == batch_id,
               BatchItemAttempt.finished_at >= now - RATE_WINDOW)
        .order_by(BatchItemAttempt.finished_at.desc()).limit(RATE_SAMPLE)).scalars().all()
    return (len(starts), min(starts)) if starts else None


def batch_eta(batch, now=None):
    """Seconds left at the rate of the last two minutes; None while nothing
    finished in them (no rate to go by)."""
    if not batch.is_active:
        return None
    now = now or utcnow()
    rate = recent_rate(batch.id, now)
    if rate is None:
        return None
    finished, since = rate
    return eta_seconds(batch.pending + batch.running, finished, since, now)


def items_by_status(batch):
    """How many items are in each status group, from the batch row's counters:
    here ``ignored`` does not hold the cancelled items, which have their own
    key (the API's BATCH ``ignored`` includes them, as the contract says)."""
    return {name: getattr(batch, name) for name in COUNTER_NAMES}
