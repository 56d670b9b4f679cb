"""Handing runnable batches to RQ: their lanes, and the error workbooks a batch's end changes.

``start`` and the ``enqueue_*`` functions enqueue at once, for a caller whose work has committed (a
lane job after the runner's commits, recovery); a view asks inside its transaction with
``start_after_commit`` and ``rebuild_error_file_after_commit``, and the jobs go to RQ once it
commits (``portal.infra.queueing.enqueue_after_commit``), never if it rolls back. Enqueueing is best effort (``portal.infra.queueing.enqueue``): if Redis is unreachable the batch stays in
the database and recovery starts it later. The jobs are named by their declared names: a service
never imports a job.
"""
import logging
import uuid

from portal.infra.extensions import db
from portal.infra.queueing import enqueue, enqueue_after_commit, get_queue
from portal.models import Batch

log = logging.getLogger(__name__)

# The declared names of the jobs (``portal.jobs.batch_jobs``, ``portal.jobs.excel_jobs``).
LANE = "batch-lane"
ERROR_FILE = "error-file"
# How many waiting job ids a lane reads to tell its own batch's lanes from other work.
QUEUE_PEEK = 100


def _lane_prefix(batch_id):
    return f"lane-{batch_id}-"


def _lane_id(batch_id):
    """A lane's job id names its batch, so that a lane can tell its own batch's lanes in the queue."""
    return _lane_prefix(batch_id) + uuid.uuid4().hex


def enqueue_lanes(batch_id, count):
    """Enqueue ``count`` lanes (at most the batch's concurrency is useful); False when Redis
    refused (the first refusal ends the loop: one log line)."""
    for _ in range(max(0, count)):
        if not enqueue(LANE, batch_id, job_id=_lane_id(batch_id)):
            return False
    return True


def enqueue_lane_at(batch_id, when):
    """One lane at ``when`` (aware UTC): the batch's next retry is due then."""
    return enqueue(LANE, batch_id, job_id=_lane_id(batch_id), at=when)


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


def refresh_error_files(batch_id):
    """Rebuild the error workbooks a batch's end may change: its own, and that
    of the batch whose error workbook it corrects."""
    source_id = db.session.execute(
        db.select(Batch.source_batch_id).where(Batch.id == batch_id)).scalar()
    db.session.rollback()
    for target in (batch_id, source_id):
        if target is not None:
            enqueue(ERROR_FILE, target)


def rebuild_error_file_after_commit(batch_id):
    """The batch's error workbook, built once the caller's transaction commits."""
    enqueue_after_commit(ERROR_FILE, batch_id)


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
    """Lanes for a batch that has runnable items, now (after the caller's commit)."""
    lanes = lanes_for(batch)
    return enqueue_lanes(batch.id, lanes) if lanes else True



def start_after_commit(batch):
    """Lanes for a batch that has runnable items, enqueued once the caller's transaction commits.

    Counted from the batch as this transaction leaves it: written out and read back, as a read
    after the commit would see it (counters may have moved in SQL the ORM object does not know)."""
    db.session.flush()
    db.session.refresh(batch, ["status", "pending", "concurrency"])
    for _ in range(lanes_for(batch)):
        enqueue_after_commit(LANE, batch.id, job_id=_lane_id(batch.id))
