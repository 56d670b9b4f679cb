"""Handing runnable batches to RQ. Called after the caller's commit.

Enqueueing is best effort: if Redis is unreachable the batch stays in the
database and the recovery job starts it later.
"""
import logging
import uuid

from portal.extensions import db
from portal.models import Batch
from portal.queueing import get_queue

log = logging.getLogger(__name__)

# The jobs the batch services enqueue, by path (services do not import jobs).
LANE_JOB = "portal.jobs.batch_jobs.run_batch_lane"
ERROR_FILE_JOB = "portal.jobs.excel_jobs.build_error_file"
LANE_TIMEOUT = 600
# How many waiting job ids a lane reads to tell its own batch's lanes from other work.
QUEUE_PEEK = 100


def _lane_prefix(batch_id):
    return f"lane-{batch_id}-"


def _lane_id(batch_id):
    """A lane's job id names its batch, so that a lane can tell its own batch's lanes in the queue."""
    return _lane_prefix(batch_id) + uuid.uuid4().hex


def enqueue_lanes(batch_id, count):
    """Enqueue ``count`` lanes (at most the batch's concurrency is useful)."""
    try:
        queue = get_queue()
        for _ in range(max(0, count)):
            queue.enqueue(LANE_JOB, batch_id, job_id=_lane_id(batch_id), job_timeout=LANE_TIMEOUT,
                          result_ttl=60, failure_ttl=7 * 24 * 3600)
        return True
    except Exception:  # Redis down: the database still holds the work
        log.exception("could not enqueue batch %s; recovery will start it", batch_id)
        return False


def queue_has_other_work(batch_id):
    """Whether jobs other than ``batch_id``'s own lanes wait in the queue (a lane
    of that batch then ends its work at the end of its slice).

    A lane giving way to another lane of its own batch would gain nothing and
    cost a work-horse's start per slice: with a concurrency above the number of
    workers, lanes of the batch always wait. When Redis cannot tell, yes: the
    lane ends, its work stays in the database."""
    try:
        queue = get_queue()
        waiting = queue.get_job_ids(0, QUEUE_PEEK)
        own = _lane_prefix(batch_id)
        if any(not job_id.startswith(own) for job_id in waiting):
            return True
        return len(waiting) == QUEUE_PEEK and queue.count > QUEUE_PEEK
    except Exception:
        log.exception("could not read the queue")
        return True


def enqueue_lane_at(batch_id, when):
    try:
        get_queue().enqueue_at(when, LANE_JOB, batch_id, job_id=_lane_id(batch_id),
                               job_timeout=LANE_TIMEOUT, result_ttl=60)
        return True
    except Exception:
        log.exception("could not schedule batch %s", batch_id)
        return False


def refresh_error_files(batch_id):
    """Rebuild the error workbooks a batch's end may change: its own, and that
    of the batch whose error workbook it corrects."""
    source_id = db.session.execute(
        db.select(Batch.source_batch_id).where(Batch.id == batch_id)).scalar()
    db.session.rollback()
    for target in (batch_id, source_id):
        if target is not None:
            enqueue_job(ERROR_FILE_JOB, target)


def enqueue_job(path, *args, timeout=600):
    try:
        get_queue().enqueue(path, *args, job_timeout=timeout, result_ttl=60)
        return True
    except Exception:
        log.exception("could not enqueue %s%s", path, args)
        return False


# SQLite has one write lock for the whole database, so a batch runs one item at
# a time there whatever its concurrency: more lanes would only queue ahead of
# other batches' lanes. (SQLite is the single-worker development mode.)
SQLITE_LANES_PER_BATCH = 1


def lanes_for(batch):
    """How many lanes a batch with runnable items should have."""
    if not batch.is_active or batch.pending <= 0:
        return 0
    lanes = min(batch.concurrency, batch.pending)
    if db.engine.dialect.name == "sqlite":
        lanes = min(lanes, SQLITE_LANES_PER_BATCH)
    return lanes


def start(batch):
    """Lanes for a batch that has runnable items."""
    lanes = lanes_for(batch)
    return enqueue_lanes(batch.id, lanes) if lanes else True
