"""A lane gives way to other batches' jobs at the end of a slice, never to its own batch's lanes."""
import pytest

from portal.batches import dispatch
from portal.infra.queueing import enqueue, get_queue
from portal.jobs import batch_jobs, excel_jobs


@pytest.fixture
def short_slices(app):
    saved = app.config["BATCH_SLICE_SECONDS"]
    app.config["BATCH_SLICE_SECONDS"] = 0.02
    yield
    app.config["BATCH_SLICE_SECONDS"] = saved


def _batch(factory, users, count, title):
    tasks = factory.tasks(count, starter=users["admin"], title=title)
    return factory.batch(users["alice"], tasks, comment="ok", concurrency=5)


def test_only_other_work_in_the_queue_counts(app, factory):
    users = factory.standard()
    assert dispatch.queue_has_other_work(7) is False
    dispatch.enqueue_lanes(7, 3)
    assert dispatch.queue_has_other_work(7) is False
    assert dispatch.queue_has_other_work(8) is True          # batch 8's lane sees batch 7's
    dispatch.enqueue_lanes(71, 1)                             # a batch whose number starts alike
    assert dispatch.queue_has_other_work(7) is True
    get_queue().empty()
    enqueue(excel_jobs.build_error_file, 7)
    assert dispatch.queue_has_other_work(7) is True


def test_a_lane_goes_on_past_its_slice_while_only_its_own_lanes_wait(factory, short_slices):
    users = factory.standard()
    batch = _batch(factory, users, 120, "Mine")
    dispatch.enqueue_lanes(batch.id, 4)                        # lanes beyond the workers wait
    assert batch_jobs.run_batch_lane(batch.id) == 120           # one job, many slices


def test_a_lane_gives_way_to_another_batch_at_the_end_of_a_slice(factory, short_slices):
    users = factory.standard()
    batch = _batch(factory, users, 400, "Mine")
    other = _batch(factory, users, 5, "Theirs")
    get_queue().empty()
    dispatch.enqueue_lanes(other.id, 1)
    processed = batch_jobs.run_batch_lane(batch.id)
    assert 0 < processed < 400
    waiting = [job.args for job in get_queue().get_jobs()]
    assert waiting == [(other.id,), (batch.id,)]               # requeued behind the other batch
