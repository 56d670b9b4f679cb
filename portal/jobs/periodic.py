"""Periodic jobs, declared once each in ``PERIODIC_JOBS``: the list ``flask --app app scheduler``
keeps registered (``portal.jobs.scheduler``), each under its fixed id with its own interval. Today:
recovery of batches (``recover_batches``, here) and the sweep of completion notices' deliveries
whose job was lost (``notice_jobs.sweep_deliveries``). Each one is idempotent, so a second
scheduler or a late duplicate run does no harm."""
import logging

from portal.batches import dispatch, recovery
from portal.infra.extensions import db
from portal.infra.queueing import background_job
from portal.jobs.notice_jobs import sweep_deliveries
from portal.models import Batch

log = logging.getLogger(__name__)

# RQ job ids allow letters, digits, "_" and "-" only. Every periodic job's id
# starts with the prefix, so the scheduler can tell its own stale ones apart.
PERIODIC_PREFIX = "portal-"
RECOVER_JOB_ID = PERIODIC_PREFIX + "recover-batches"
SWEEP_JOB_ID = PERIODIC_PREFIX + "sweep-notice-deliveries"


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
    log.info("recovery: %s", result)
    return result


# (fixed job id, job, the setting that holds its interval in seconds)
PERIODIC_JOBS = (
    (RECOVER_JOB_ID, recover_batches, "RECOVERY_INTERVAL_SECONDS"),
    (SWEEP_JOB_ID, sweep_deliveries, "NOTICE_SWEEP_INTERVAL_SECONDS"),
)


def periodic_jobs(config):
    """(job id, job function, interval seconds): what the scheduler keeps registered."""
    return [(job_id, job, config[setting]) for job_id, job, setting in PERIODIC_JOBS]
