"""Periodic jobs, registered by ``flask --app app scheduler``."""
from flask import current_app

from portal.batches import dispatch, recovery
from portal.models import Batch
from portal.extensions import db


def recover_batches():
    result = recovery.recover()
    for batch_id in result["restart"]:
        batch = db.session.get(Batch, batch_id)
        if batch is not None:
            dispatch.enqueue_lanes(batch_id, min(batch.concurrency, batch.pending))
    db.session.rollback()
    current_app.logger.info("recovery: %s", result)
    return result


def periodic_jobs(config):
    """(job id, function path, interval seconds): the list the scheduler keeps registered."""
    return [
        ("portal:recover-batches", "portal.jobs.periodic.recover_batches",
         config["RECOVERY_INTERVAL_SECONDS"]),
    ]
