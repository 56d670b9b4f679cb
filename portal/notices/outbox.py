"""Handing deliveries to RQ once the transaction that made them has committed.

A delivery row is made inside the batch's transaction, but its job must not run before that
transaction commits (it would find nothing) nor at all if it rolls back: ``after_commit`` hands
the jobs to the session's after-commit outbox (``portal.infra.queueing.enqueue_after_commit``).

Enqueueing is best effort: when Redis cannot be reached the delivery stays pending in the database
and the sweep (``portal.jobs.notice_jobs.sweep_deliveries``, run by the scheduler) enqueues it
later. Every job of one delivery attempt has the same RQ id, so the sweep can tell a delivery whose
job still waits in Redis from one whose job was lost.

The jobs wait on a queue of their own (``DELIVERY_QUEUE_NAME``, see ``portal.infra.queueing``): a worker
that listens to both takes batch work first, and ``make run`` gives the deliveries a worker of their
own, so a slow receiver never holds batch work or recovery. A job's timeout comes from the
attempt's deadline (``delivery.job_timeout_seconds``, declared with the job).
"""
from datetime import timezone

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from portal.infra.queueing import enqueue, enqueue_after_commit, get_redis
from portal.models.base import utcnow

# The declared name of the delivery job (``portal.jobs.notice_jobs.deliver``).
DELIVERY = "notice-delivery"
# Job states in which a delivery's job will still run (or runs now).
WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def job_id(delivery_id, attempt):
    """The RQ job id of a delivery's ``attempt`` (1 for the first)."""
    return f"notice-delivery-{delivery_id}-{attempt}"


def after_commit(session, delivery_ids):
    """Enqueue these deliveries' first attempts once ``session`` commits."""
    for delivery_id in delivery_ids:
        enqueue_after_commit(DELIVERY, delivery_id, session=session, job_id=job_id(delivery_id, 1))


def enqueue_attempt(delivery_id, attempt, when=None):
    """Enqueue a delivery's attempt now, or at ``when`` (naive UTC); False when Redis refused."""
    at = when.replace(tzinfo=timezone.utc) if when is not None and when > utcnow() else None
    return enqueue(DELIVERY, delivery_id, job_id=job_id(delivery_id, attempt), at=at)


def job_waiting(delivery_id, attempt):
    """Whether Redis holds the attempt's job still to run (or running)."""
    try:
        job = Job.fetch(job_id(delivery_id, attempt), connection=get_redis())
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in WAITING
