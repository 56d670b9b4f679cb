"""Periodic jobs: the list ``flask --app app scheduler`` keeps registered, and
the jobs themselves (recovery of batches, and of completion notices' deliveries). Each one is idempotent, so a second scheduler or a late
duplicate run does no harm."""
import logging

from portal.batches import dispatch, recovery
from portal.extensions import db
from portal.models import Batch
from portal.jobs.notice_jobs import sweep_deliveries
from portal.queueing import background_job

log = logging.getLogger(__name__)

# RQ job ids allow letters, digits, "_" and "-" only. Every periodic job's id
# starts with the prefix, so the scheduler can tell its own stale ones apart.
PERIODIC_PREFIX = "portal-"
RECOVER_JOB_ID = PERIODIC_PREFIX + "recover-batches"


@background_job("recover-batches", timeout=300,
                if_lost="the scheduler registers it again; its next run recovers")
def recover_batches():
    """One recovery pass, then lanes for every batch that has runnable work again.

    Extra lanes are harmless (the per-batch cap lives in the database), so a
    batch restarted by two overlapping runs only gets a few idle lanes.
    """
    result = recovery.recover()
    for batch_id in result["restart"]:
        batch = db.session.get(Batch, batch_id)
        lanes = dispatch.lanes_for(batch) if batch is not None else 0
        if lanes:
            dispatch.enqueue_lanes(batch_id, lanes)
    db.session.rollback()
    # Completion notices whose delivery job was lost (Redis down when they were enqueued) go
    # out again: the same safety net, on the same beat.
    result["notice_deliveries"] = sweep_deliveries()
    db.session.rollback()
    log.info("recovery: %s", result)
    return result


def periodic_jobs(config):
    """(job id, job function, interval seconds): what the scheduler keeps registered."""
    return [
        (RECOVER_JOB_ID, recover_batches, config["RECOVERY_INTERVAL_SECONDS"]),
    ]
