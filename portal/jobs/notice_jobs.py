"""Jobs of the notices: one delivery attempt, and the sweep that enqueues again what Redis lost.

The sweep is one of the scheduler's periodic jobs (``portal.jobs.periodic``): deliveries whose job
was never enqueued (Redis down at the commit) or was lost (Redis restarted without persistence, a
worker killed) are still sent.
"""
import logging
from datetime import timedelta

from portal.infra.extensions import db
from portal.infra.queueing import DELIVERIES, WEEK, background_job
from portal.models import NoticeDelivery
from portal.models.base import utcnow
from portal.notices import delivery, outbox

log = logging.getLogger(__name__)

# A delivery due this long ago and still pending has lost its job, unless Redis says it waits.
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 500


# The job's timeout comes from the attempt's deadline, read when it is enqueued.
@background_job(outbox.DELIVERY, queue=DELIVERIES, timeout=delivery.job_timeout_seconds,
                failure_ttl=WEEK, if_lost="the notice sweep enqueues the delivery again")
def deliver(delivery_id):
    """Try one delivery once; on failure enqueue its next attempt after the backoff. Returns the
    delivery's outcome for this run: "delivered", "retry", "failed" or "skipped"."""
    try:
        claimed = delivery.claim(delivery_id)
        if claimed is None:
            return "skipped"
        outcome = delivery.send(claimed)
        following = delivery.finish(claimed, outcome)
    except Exception:
        # A worker keeps its session from job to job: leave no half-done transaction behind.
        # A claim taken before the error expires, and the sweep tries the delivery again.
        db.session.rollback()
        raise
    if outcome.delivered:
        return "delivered"
    # The details are the operators': the user's delivery log says only that it failed. (No URL:
    # a query string may carry a receiver's token; the delivery's row names the target.)
    log.info("notice delivery %s (%s) attempt %s failed: %s", delivery_id, claimed.channel,
             claimed.attempt, outcome.error)
    if following is None:
        log.warning("notice delivery %s gave up after %s attempts: %s", delivery_id,
                    claimed.attempt, outcome.error)
        return "failed"
    when, attempt = following
    outbox.enqueue_attempt(delivery_id, attempt, when)
    return "retry"


def due_deliveries(now=None, grace=SWEEP_GRACE, limit=SWEEP_BATCH):
    """(id, next attempt number) of pending deliveries due for ``grace`` with no live claim."""
    now = now or utcnow()
    rows = db.session.execute(
        db.select(NoticeDelivery.id, NoticeDelivery.attempts)
        .where(NoticeDelivery.status == "pending", NoticeDelivery.next_attempt_at <= now - grace,
               db.or_(NoticeDelivery.claimed_until.is_(None), NoticeDelivery.claimed_until < now))
        .order_by(NoticeDelivery.next_attempt_at).limit(limit)).all()
    db.session.rollback()
    return [(delivery_id, attempts + 1) for delivery_id, attempts in rows]


@background_job("sweep-notice-deliveries", timeout=300,
                if_lost="the scheduler registers it again; its next run sweeps")
def sweep_deliveries(now=None):
    """Enqueue every due delivery whose job Redis does not hold; returns how many."""
    enqueued = 0
    for delivery_id, attempt in due_deliveries(now):
        if not outbox.job_waiting(delivery_id, attempt) and outbox.enqueue_attempt(delivery_id, attempt):
            enqueued += 1
    if enqueued:
        log.info("notice sweep enqueued %s deliveries", enqueued)
    return enqueued
