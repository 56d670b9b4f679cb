"""The batch engine with real RQ worker processes: exactly once, the cap,
fairness between batches, users served while a batch runs, live counters,
and a worker killed mid-batch."""
import time

from sqlalchemy import func

from support import GOOD_FORM, assert_counters_match_items, snapshot, wait_for
from portal.batches import dispatch, recovery
from portal.infra.extensions import db
from portal.models import Batch, BatchItemAttempt, History, User
from portal.models.base import utcnow
from portal.workflow import engine


def _make_batch(factory, users, count, concurrency=5, title="Claim"):
    tasks = factory.tasks(count, starter=users["admin"], title=title)
    return factory.batch(users["alice"], tasks, comment="ok", concurrency=concurrency)


def _fresh(batch_id):
    return snapshot(Batch, batch_id)


def _finished(batch_id):
    batch = _fresh(batch_id)
    return batch.status == "finished" and batch


def _assert_consistent(batch_id):
    assert_counters_match_items(batch_id)
    per_task = db.session.execute(
        db.select(History.task_id, func.count()).where(History.action == "approve")
        .group_by(History.task_id).having(func.count() > 1)).all()
    assert per_task == [], f"tasks approved more than once: {per_task}"
    return _fresh(batch_id)   # detached: reading it opens no transaction


def _approvals():
    db.session.rollback()
    count = db.session.execute(db.select(func.count(History.id)).where(
        History.action == "approve")).scalar()
    db.session.rollback()
    return count


def test_workers_run_a_batch_to_the_end_exactly_once(factory, workers):
    users = factory.standard()
    batch = _make_batch(factory, users, 60)
    dispatch.start(batch)
    dispatch.enqueue_lanes(batch.id, 5)  # duplicate deliveries of the same work
    workers.start(2)
    batch = wait_for(lambda: _finished(batch.id), timeout=120, message="batch finished")
    assert (batch.success, batch.failed, batch.ignored, batch.pending, batch.running) == (60, 0, 0, 0, 0)
    assert _approvals() == 60
    _assert_consistent(batch.id)


def test_cap_holds_across_workers_and_counters_add_up_while_running(factory, workers):
    users = factory.standard()
    batch = _make_batch(factory, users, 150, concurrency=2)
    dispatch.enqueue_lanes(batch.id, 6)  # more lanes than the cap allows
    workers.start(3)
    observed_running = []
    while not _finished(batch.id):
        current = _fresh(batch.id)
        observed_running.append(current.running)
        assert current.total == (current.pending + current.running + current.success
                                 + current.failed + current.ignored + current.cancelled)
        assert current.running <= 2
        time.sleep(0.05)
    _assert_consistent(batch.id)
    # No moment with more than 2 claims: check the attempts' [claimed, finished] intervals.
    spans = db.session.execute(db.select(BatchItemAttempt.started_at, BatchItemAttempt.finished_at)
                               .where(BatchItemAttempt.batch_id == batch.id)).all()
    db.session.rollback()
    events = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans],
                    key=lambda e: (e[0], e[1]))
    in_flight = peak = 0
    for _when, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert len(spans) == 150 and peak <= 2


def test_small_batch_is_not_starved_by_a_big_one(factory, workers):
    users = factory.standard()
    big = _make_batch(factory, users, 1500, concurrency=5, title="Big")
    dispatch.start(big)
    workers.start(2)
    wait_for(lambda: _fresh(big.id).success > 20, timeout=60, message="big batch started")
    small = _make_batch(factory, users, 5, concurrency=5, title="Small")
    dispatch.start(small)
    wait_for(lambda: _finished(small.id), timeout=120, message="small batch finished")
    big_now = _fresh(big.id)
    assert big_now.pending > 0, "the small batch waited for the big one to finish"
    wait_for(lambda: _finished(big.id), timeout=240, message="big batch finished")
    _assert_consistent(big.id)
    _assert_consistent(small.id)


def test_users_are_served_while_a_big_batch_runs_and_it_keeps_going(factory, workers):
    """On SQLite one write lock serves both: neither the lanes nor a user's
    approvals may starve the other. (How long an approval waits is measured
    in bench/bench_under_load.py.)"""
    users = factory.standard()
    big = _make_batch(factory, users, 1500, concurrency=5, title="Big")
    singles = [task.id for task in factory.tasks(30, starter=users["admin"], title="Single")]
    alice_id = users["alice"].id
    dispatch.start(big)
    workers.start(2)
    wait_for(lambda: _fresh(big.id).success > 20, timeout=60, message="big batch started")
    before = _fresh(big.id).success
    for task_id in singles:
        # A starved approval would end in "database is locked" after the wait limit.
        engine.decide(task_id, db.session.get(User, alice_id), "approve", "one by one", GOOD_FORM)
        db.session.commit()
        time.sleep(0.05)
    progressed = _fresh(big.id).success - before
    assert progressed >= 50, f"the batch did {progressed} items meanwhile"
    wait_for(lambda: _finished(big.id), timeout=240, message="big batch finished")
    _assert_consistent(big.id)


def test_killed_worker_loses_nothing_and_the_batch_resumes(factory, workers, app):
    users = factory.standard()
    # Big enough that one worker cannot finish it between two polls below.
    batch = _make_batch(factory, users, 1500, concurrency=3)
    dispatch.start(batch)
    (victim,) = workers.start(1)
    wait_for(lambda: _fresh(batch.id).success >= 30, timeout=60, message="progress")
    workers.kill(victim)  # the worker and its work-horse, mid-batch
    victim.wait(timeout=10)
    stopped = _assert_consistent(batch.id)
    assert stopped.status == "running" and stopped.pending > 0
    assert _approvals() == stopped.success
    # Resume from database state: reclaim leases as if they had expired, then new lanes.
    far_future = utcnow().replace(year=utcnow().year + 1)
    recovery.reclaim_leases(now=far_future)
    db.session.execute(db.update(Batch).where(Batch.id == batch.id).values(progress_at=None,
                       created_at=utcnow().replace(year=2000)))
    db.session.commit()
    for batch_id in recovery.recover()["restart"]:
        dispatch.enqueue_lanes(batch_id, 3)
    workers.start(2)
    done = wait_for(lambda: _finished(batch.id), timeout=180, message="batch resumed and finished")
    assert done.success == 1500 and done.failed == 0
    assert _approvals() == 1500
    _assert_consistent(batch.id)
