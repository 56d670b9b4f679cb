"""Jobs that run batch items."""
from datetime import timezone

from portal.batches import dispatch, runner
from portal.infra.queueing import WEEK, background_job


@background_job(dispatch.LANE, timeout=600, failure_ttl=WEEK,
                if_lost="recovery restarts the batch once it stalls")
def run_batch_lane(batch_id):
    """Work on one batch slice by slice while no other work waits (another
    batch's lane, another job), then requeue at the back of the queue."""
    result = runner.run_lane(batch_id, others_waiting=lambda: dispatch.queue_has_other_work(batch_id))
    if result.more:
        dispatch.enqueue_lanes(batch_id, 1)
    elif result.retry_at is not None:
        dispatch.enqueue_lane_at(batch_id, result.retry_at.replace(tzinfo=timezone.utc))
    if result.ended and result.processed:
        # The lane that ended the batch has its error workbook (and that of
        # the batch it corrects) rebuilt, or dropped when nothing is open.
        dispatch.refresh_error_files(batch_id)
    return result.processed
