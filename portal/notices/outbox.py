"""Handing deliveries to RQ once the transaction that made them has committed.

A delivery row is made inside the batch's transaction, but its job must not run before that
transaction commits (it would find nothing) nor at all if it rolls back. So the ids are kept on the
session and enqueued from SQLAlchemy's ``after_commit`` event; a rollback forgets them.

Enqueueing is best effort: when Redis cannot be reached the delivery stays pending in the database
and the sweep (``jobs.sweep_deliveries``, run by the scheduler) enqueues it later. Every job of one
delivery attempt has the same RQ id, so the sweep can tell a delivery whose job still waits in
Redis from one whose job was lost.

The jobs wait on a queue of their own (``DELIVERY_QUEUE_NAME``, see ``portal.queueing``): a worker
that listens to both takes batch work first, and ``make run`` gives the deliveries a worker of their
own, so a slow receiver never holds batch work or recovery. A job's timeout comes from the
attempt's deadline (``delivery.job_timeout_seconds``).
"""
import logging
from datetime import timezone

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import event

from portal.extensions import db
from portal.models.base import utcnow
from portal.notices import delivery
from portal.queueing import get_delivery_queue, get_redis

log = logging.getLogger(__name__)

DELIVER_JOB = "portal.notices.jobs.deliver"
SESSION_KEY = "portal_notice_deliveries"
# Job states in which a delivery's job will still run (or runs now).
WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def job_id(delivery_id, attempt):
    """The RQ job id of a delivery's ``attempt`` (1 for the first)."""
    return f"notice-delivery-{delivery_id}-{attempt}"


def after_commit(session, delivery_ids):
    """Enqueue these deliveries' first attempts once ``session`` commits."""
    session.info.setdefault(SESSION_KEY, []).extend(delivery_ids)


def _send_after_commit(session):
    # SQLAlchemy also sends after_commit when a SAVEPOINT is released: the transaction goes on.
    if session.in_nested_transaction():
        return
    delivery_ids = session.info.pop(SESSION_KEY, None)
    for delivery_id in delivery_ids or ():
        enqueue(delivery_id, 1)


def _forget_at_transaction_end(session, transaction):
    # The outermost transaction ended: after a commit the ids were sent above; after a rollback
    # their rows are gone.
    if transaction.parent is None:
        session.info.pop(SESSION_KEY, None)


def install_session_hooks():
    """Listen to every session's commits and transaction ends (once per process)."""
    if not event.contains(db.session, "after_commit", _send_after_commit):
        event.listen(db.session, "after_commit", _send_after_commit)
        event.listen(db.session, "after_transaction_end", _forget_at_transaction_end)


def enqueue(delivery_id, attempt, when=None):
    """Enqueue a delivery's attempt now, or at ``when`` (naive UTC); False when Redis refused."""
    try:
        queue = get_delivery_queue()
        options = {"job_id": job_id(delivery_id, attempt),
                   "job_timeout": delivery.job_timeout_seconds(),
                   "result_ttl": 60, "failure_ttl": 7 * 24 * 3600}
        if when is not None and when > utcnow():
            queue.enqueue_at(when.replace(tzinfo=timezone.utc), DELIVER_JOB, delivery_id, **options)
        else:
            queue.enqueue(DELIVER_JOB, delivery_id, **options)
        return True
    except Exception:  # Redis down: the delivery stays pending and the sweep enqueues it later
        log.exception("could not enqueue notice delivery %s; the sweep will", delivery_id)
        return False


def job_waiting(delivery_id, attempt):
    """Whether Redis holds the attempt's job still to run (or running)."""
    try:
        job = Job.fetch(job_id(delivery_id, attempt), connection=get_redis())
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in WAITING
