"""How far a batch is: percent done, time left, the status people see.

Everything comes from the batch row's counters, never from counting items.
"""
from portal.models.base import utcnow

ACTIVE_STATUSES = ("pending", "running")
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
    return "finished_with_errors" if batch.with_errors else batch.status


def is_active(batch):
    return batch.status in ACTIVE_STATUSES


def batch_eta(batch, now=None):
    if not is_active(batch):
        return None
    # Only items a worker ran count towards the rate; ignored ones mostly never ran.
    return eta_seconds(batch.pending + batch.running, batch.success + batch.failed,
                       batch.started_at, now or utcnow())


def items_by_status(batch):
    """How many items are in each status group, from the batch row's counters:
    here ``ignored`` does not hold the cancelled items, which have their own
    key (the API's BATCH ``ignored`` includes them, as the contract says)."""
    return {name: getattr(batch, name) for name in COUNTER_NAMES}
