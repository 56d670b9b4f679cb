"""Retries by cause and recovery from database state, in one process.

Unexpected errors (lost database or Redis connection, deadlock, lock timeout,
a worker that vanished) go back to pending with exponential backoff and
jitter until BATCH_RETRY_LIMIT, then fail and hand the task back to people.
Validation and user errors wait for a person; ignored items are final.
Recovery reclaims expired leases, retries recent unexpected failures under the
limit, closes drained batches and restarts stalled ones, doing each once even
when two recoveries run at the same moment.
"""
import threading
from datetime import timedelta

import pytest
import redis
from flask import current_app
from sqlalchemy.exc import OperationalError

from support import GOOD_FORM, assert_counters_match_items
from portal.batches import control, creation, dispatch, lifecycle, recovery, runner
from portal.infra.extensions import db
from portal.infra.queueing import get_queue
from portal.jobs import periodic
from portal.models import Batch, BatchEvent, BatchItem, BatchItemAttempt, History, Task
from portal.models.base import utcnow
from portal.workflow import engine


class Clock:
    """The runner's and recovery's clock, moved forward instead of sleeping."""

    def __init__(self):
        self.offset = timedelta(0)

    def now(self):
        return utcnow() + self.offset

    def advance(self, seconds):
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    moved = Clock()
    monkeypatch.setattr(runner, "utcnow", moved.now)
    monkeypatch.setattr(recovery, "utcnow", moved.now)
    return moved


def _batch(factory, count=3, users=None, **options):
    users = users or factory.standard()
    tasks = factory.tasks(count, starter=users["admin"])
    return factory.batch(users["alice"], tasks, **options), tasks, users


def _item(batch_id, task_id):
    db.session.rollback()
    return db.session.execute(db.select(BatchItem).where(
        BatchItem.batch_id == batch_id, BatchItem.task_id == task_id)).scalar_one()


def _batch_now(batch_id):
    db.session.rollback()
    return db.session.get(Batch, batch_id)


def _task(task_id):
    db.session.rollback()
    return db.session.get(Task, task_id)


def _approvals(task_id):
    return db.session.execute(db.select(db.func.count(History.id)).where(
        History.task_id == task_id, History.action == "approve")).scalar()


def _fail_on(monkeypatch, task_id, error, times=None):
    """Make the approval of ``task_id`` raise ``error`` (``times`` times, or always)."""
    real_decide = runner.decide
    raised = []

    def flaky_decide(this_task_id, *args, **kwargs):
        if this_task_id == task_id and (times is None or len(raised) < times):
            raised.append(this_task_id)
            raise error
        return real_decide(this_task_id, *args, **kwargs)

    monkeypatch.setattr(runner, "decide", flaky_decide)
    return raised


def _db_error(message):
    return OperationalError("UPDATE task SET status=?", {}, Exception(message))


UNEXPECTED = {
    "lost database connection": _db_error("server closed the connection unexpectedly"),
    "deadlock": _db_error("deadlock detected"),
    "lock timeout": _db_error("canceling statement due to lock timeout"),
    "lost Redis connection": redis.exceptions.ConnectionError("Connection refused"),
    "bug": RuntimeError("something nobody expected"),
}


# --- 1. manual retries (the service behind the retry buttons and the API) -----------------

def test_each_manual_retry_counts_once_and_the_limit_unlocks_the_task(factory, app):
    batch, tasks, users = _batch(factory, 2)
    users["alice"].disabled = True  # every run fails with a user error
    db.session.commit()
    runner.run_inline(batch.id)
    limit = app.config["BATCH_RETRY_LIMIT"]
    for round_number in range(1, limit + 1):
        _b, retried, at_limit, _needs_correction = control.retry(batch, users["sam"])
        db.session.commit()
        assert (retried, at_limit) == (2, 0)
        for task in tasks:
            item = _item(batch.id, task.id)
            assert (item.status, item.retry_count) == ("pending", round_number)
            assert _task(task.id).lock_batch_id == batch.id  # the batch holds the task again
        runner.run_inline(batch.id)
        assert {_item(batch.id, t.id).status for t in tasks} == {"failed"}
        assert all(_task(t.id).lock_batch_id is None for t in tasks)

    _b, retried, at_limit, _needs_correction = control.retry(batch, users["sam"])
    db.session.commit()
    assert (retried, at_limit) == (0, 2)
    for task in tasks:
        assert (_item(batch.id, task.id).status, _item(batch.id, task.id).retry_count) == (
            "failed", limit)
        assert _task(task.id).lock_holder_id is None and _task(task.id).lock_batch_id is None
    # back in people's hands: the assignee approves it herself
    users["alice"].disabled = False
    engine.decide(tasks[0].id, users["alice"], "approve", "by hand", GOOD_FORM)
    db.session.commit()
    assert _approvals(tasks[0].id) == 1
    assert_counters_match_items(batch.id)


def test_retry_of_chosen_items_leaves_the_others(factory):
    batch, tasks, users = _batch(factory, 3)
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    chosen = _item(batch.id, tasks[1].id)
    _b, retried, _at_limit, _needs = control.retry(batch, users["sam"], item_ids=[chosen.id])
    db.session.commit()
    assert retried == 1
    assert [_item(batch.id, t.id).retry_count for t in tasks] == [0, 1, 0]
    assert_counters_match_items(batch.id)


# --- 2. automatic retries by cause -----------------------------------------------------------

def test_backoff_is_exponential_with_jitter_and_capped():
    for retry_count in (1, 2, 3, 5):
        samples = [lifecycle.backoff_seconds(retry_count) for _ in range(50)]
        assert all(0.5 * 2 ** retry_count <= s <= 2 ** retry_count for s in samples)
        assert len(set(samples)) > 1  # jitter: retries of many items do not line up
    assert max(lifecycle.backoff_seconds(30) for _ in range(50)) <= 300


@pytest.mark.parametrize("cause", list(UNEXPECTED))
def test_unexpected_error_goes_back_to_pending_with_backoff_then_succeeds(
        factory, clock, monkeypatch, cause):
    batch, tasks, _users = _batch(factory, 3)
    flaky = tasks[1]
    raised = _fail_on(monkeypatch, flaky.id, UNEXPECTED[cause], times=1)
    before = clock.now()
    runner.run_inline(batch.id)
    assert raised == [flaky.id]

    item = _item(batch.id, flaky.id)
    assert (item.status, item.retry_count, item.error_kind) == ("pending", 1, "unexpected")
    assert type(UNEXPECTED[cause]).__name__ in item.error
    # backoff_seconds(1) is 1-2 s: due in the future, not at once
    due = item.next_attempt_at
    assert before + timedelta(seconds=1) <= due <= clock.now() + timedelta(seconds=2)
    assert _task(flaky.id).lock_batch_id == batch.id  # still the batch's to run
    attempt = db.session.execute(db.select(BatchItemAttempt).where(
        BatchItemAttempt.item_id == item.id)).scalar_one()
    assert attempt.outcome == "error" and type(UNEXPECTED[cause]).__name__ in attempt.error
    running = _batch_now(batch.id)
    assert (running.status, running.success, running.pending) == ("running", 2, 1)
    assert_counters_match_items(batch.id)

    assert runner.run_inline(batch.id) == 0  # not due yet
    clock.advance(3)
    assert runner.run_inline(batch.id) == 1
    item = _item(batch.id, flaky.id)
    assert (item.status, item.retry_count) == ("success", 1)
    assert _approvals(flaky.id) == 1
    done = _batch_now(batch.id)
    assert (done.status, done.success, done.failed) == ("finished", 3, 0)
    assert_counters_match_items(batch.id)


def test_unexpected_errors_fail_the_item_at_the_limit_and_unlock_its_task(
        factory, clock, monkeypatch, app):
    batch, tasks, users = _batch(factory, 2)
    broken = tasks[0]
    raised = _fail_on(monkeypatch, broken.id, _db_error("deadlock detected"))
    limit = app.config["BATCH_RETRY_LIMIT"]
    for expected_retries in range(1, limit + 1):
        runner.run_inline(batch.id)
        item = _item(batch.id, broken.id)
        assert (item.status, item.retry_count) == ("pending", expected_retries)
        clock.advance(400)  # past the longest backoff
    runner.run_inline(batch.id)

    assert len(raised) == limit + 1
    item = _item(batch.id, broken.id)
    assert (item.status, item.error_kind, item.retry_count) == ("failed", "unexpected", limit)
    task = _task(broken.id)
    assert task.status == "pending" and task.lock_batch_id is None and task.lock_holder_id is None
    done = _batch_now(batch.id)
    assert (done.status, done.success, done.failed) == ("finished", 1, 1) and done.with_errors
    assert_counters_match_items(batch.id)
    # neither a person nor recovery can retry it any more
    assert control.retry(done, users["sam"])[1:] == (0, 1, 0)
    db.session.rollback()
    assert recovery.recover(clock.now())["retried"] == 0
    assert _item(batch.id, broken.id).status == "failed"


def test_validation_user_and_ignored_outcomes_are_never_retried_automatically(
        factory, clock, app, monkeypatch):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    engine.set_suspended(tasks[2].instance_id, users["admin"], True)
    db.session.commit()
    rows = {tasks[0].id: {"decision": {"action": "approve", "form": {"amount": "lots"}}},
            tasks[1].id: {"decision": {"action": "approve", "form": GOOD_FORM}},
            tasks[2].id: {"decision": {"action": "approve", "form": GOOD_FORM}}}
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=list(rows),
                                  mode="single", rows=rows)
    db.session.commit()
    runner.run_inline(batch.id)
    user_batch, _tasks, _users = _batch(factory, 1, users=users)
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(user_batch.id)

    def outcomes():
        db.session.rollback()
        return sorted((i.error_kind, i.status, i.retry_count, i.next_attempt_at)
                      for i in db.session.execute(
                          db.select(BatchItem).where(BatchItem.status != "success")).scalars())

    before = outcomes()
    assert before == [("suspended", "ignored", 0, None), ("user", "failed", 0, None),
                      ("validation", "failed", 0, None)]
    monkeypatch.setitem(app.config, "BATCH_RETRY_LIMIT", 10)  # the limit is not what stops them
    clock.advance(3600)
    result = recovery.recover(clock.now())
    assert (result["retried"], result["reclaimed"], result["restart"]) == (0, 0, [])
    assert outcomes() == before


def test_expired_lease_is_reclaimed_and_the_late_worker_changes_nothing(factory, clock, app):
    batch, tasks, _users = _batch(factory, 2, concurrency=1)
    claim = runner.claim_next(batch.id)  # a worker took the item, then vanished
    assert recovery.recover(clock.now())["reclaimed"] == 0  # the lease still runs
    clock.advance(app.config["BATCH_LEASE_SECONDS"] + 1)

    result = recovery.recover(clock.now())
    assert result["reclaimed"] == 1 and batch.id in result["restart"]
    item = db.session.get(BatchItem, claim.item_id)
    assert (item.status, item.retry_count, item.error_kind) == ("pending", 1, "unexpected")
    assert item.next_attempt_at > clock.now() and item.lease_token is None
    attempt = db.session.execute(db.select(BatchItemAttempt).where(
        BatchItemAttempt.item_id == item.id)).scalar_one()
    assert attempt.outcome == "error" and attempt.error == str(recovery.LEASE_EXPIRED)
    assert_counters_match_items(batch.id)

    assert runner.run_claimed_item(claim) is None  # the vanished worker comes back: refused
    assert _approvals(item.task_id) == 0
    clock.advance(5)
    runner.run_inline(batch.id)
    assert _approvals(item.task_id) == 1
    assert _batch_now(batch.id).status == "finished"
    assert_counters_match_items(batch.id)


def test_lease_expiring_at_the_limit_fails_the_item_and_unlocks_its_task(factory, clock, app):
    batch, tasks, _users = _batch(factory, 1)
    limit = app.config["BATCH_RETRY_LIMIT"]
    for _round in range(limit + 1):
        clock.advance(400)  # past the backoff of the previous round
        claim = runner.claim_next(batch.id)
        assert claim is not None
        clock.advance(app.config["BATCH_LEASE_SECONDS"] + 1)
        recovery.recover(clock.now())
    item = _item(batch.id, tasks[0].id)
    assert (item.status, item.retry_count) == ("failed", limit)
    assert item.error == str(recovery.LEASE_EXPIRED)
    assert _task(tasks[0].id).lock_batch_id is None
    assert _batch_now(batch.id).status == "finished"
    assert_counters_match_items(batch.id)


def test_connection_lost_mid_item_is_an_unexpected_error(factory, clock, monkeypatch):
    """The database connection drops under a running item (in-process: SQLAlchemy
    invalidates it, as it does when the server goes away)."""
    batch, tasks, _users = _batch(factory, 2)
    real_decide = runner.decide
    dropped = []

    def decide_then_lose_the_connection(task_id, *args, **kwargs):
        task = real_decide(task_id, *args, **kwargs)
        if not dropped:
            dropped.append(task_id)
            db.session.connection().invalidate()
        return task

    monkeypatch.setattr(runner, "decide", decide_then_lose_the_connection)
    runner.run_inline(batch.id)
    item = _item(batch.id, dropped[0])
    assert (item.status, item.retry_count, item.error_kind) == ("pending", 1, "unexpected")
    assert _approvals(dropped[0]) == 0  # the approval was rolled back with the connection
    clock.advance(3)
    runner.run_inline(batch.id)
    assert [_approvals(t.id) for t in tasks] == [1, 1]
    assert_counters_match_items(batch.id)


# --- 3. recovery -------------------------------------------------------------------------

def _fail_unexpectedly_at_limit(factory, monkeypatch, clock, users=None, limit=1):
    """A finished batch whose one item failed unexpectedly at ``limit``."""
    monkeypatch.setitem(current_app.config, "BATCH_RETRY_LIMIT", limit)
    batch, tasks, users = _batch(factory, 1, users=users)
    with monkeypatch.context() as patch:
        _fail_on(patch, tasks[0].id, _db_error("server closed the connection unexpectedly"))
        for _round in range(limit + 1):
            runner.run_inline(batch.id)
            clock.advance(400)
    item = _item(batch.id, tasks[0].id)
    assert (item.status, item.error_kind, item.retry_count) == ("failed", "unexpected", limit)
    return batch, tasks[0], users


def test_recent_unexpected_failures_under_a_raised_limit_are_retried(factory, monkeypatch, clock):
    batch, task, users = _fail_unexpectedly_at_limit(factory, monkeypatch, clock)
    old, old_task, _u = _fail_unexpectedly_at_limit(factory, monkeypatch, clock, users=users)
    gone, gone_task, _u = _fail_unexpectedly_at_limit(factory, monkeypatch, clock, users=users)
    db.session.execute(db.update(BatchItem).where(BatchItem.batch_id == old.id).values(
        finished_at=clock.now() - timedelta(hours=25)))
    db.session.execute(db.update(Batch).where(Batch.id == gone.id).values(status="cancelled"))
    db.session.commit()
    monkeypatch.setitem(current_app.config, "BATCH_RETRY_LIMIT", 3)  # an operator raised it

    result = recovery.recover(clock.now())
    assert result["retried"] == 1 and result["restart"] == [batch.id]
    item = _item(batch.id, task.id)
    assert (item.status, item.retry_count) == ("pending", 2)
    assert item.next_attempt_at > clock.now()
    assert _task(task.id).lock_batch_id == batch.id
    assert _batch_now(batch.id).status == "running"
    event = db.session.execute(db.select(BatchEvent).where(
        BatchEvent.batch_id == batch.id, BatchEvent.action == "retried")).scalar_one()
    assert event.user_id is None and event.detail["automatic"] is True
    assert _item(old.id, old_task.id).status == "failed"    # older than 24 h: for a person
    assert _item(gone.id, gone_task.id).status == "failed"  # cancelled batch
    assert_counters_match_items(batch.id)

    assert recovery.recover(clock.now())["retried"] == 0  # done once
    clock.advance(10)
    runner.run_inline(batch.id)
    assert _item(batch.id, task.id).status == "success" and _approvals(task.id) == 1
    assert_counters_match_items(batch.id)


def _age(batch_id, seconds, clock):
    then = clock.now() - timedelta(seconds=seconds)
    db.session.execute(db.update(Batch).where(Batch.id == batch_id).values(
        created_at=then, progress_at=None if _batch_now(batch_id).progress_at is None else then))
    db.session.commit()


def test_stalled_and_never_started_batches_are_restarted_once(factory, app, clock):
    stall = app.config["BATCH_STALL_SECONDS"]
    never_started, _t, users = _batch(factory, 3)
    stalled, _t, _u = _batch(factory, 3, users=users)
    runner.run_claimed_item(runner.claim_next(stalled.id), claim_next_item=False)
    fresh, _t, _u = _batch(factory, 3, users=users)
    paused, _t, _u = _batch(factory, 3, users=users)
    control.pause(paused, users["alice"])
    db.session.commit()
    for batch_id in (never_started.id, stalled.id, paused.id):
        _age(batch_id, stall + 1, clock)

    first = recovery.recover(clock.now())
    assert first["restart"] == sorted([never_started.id, stalled.id])
    assert first["stalled"] == 2
    second = recovery.recover(clock.now())
    assert second["restart"] == []  # restarting counts as progress: not restarted twice
    assert _batch_now(fresh.id).status == "pending"
    assert _batch_now(paused.id).status == "paused"


def test_drained_running_batch_is_closed(factory):
    batch, _tasks, _users = _batch(factory, 2)
    runner.run_inline(batch.id)
    db.session.execute(db.update(Batch).where(Batch.id == batch.id).values(
        status="running", finished_at=None))  # a crash between the last item and the close
    db.session.commit()
    assert recovery.recover()["closed"] == 1
    assert _batch_now(batch.id).status == "finished"
    assert recovery.recover()["closed"] == 0


def _recovery_scenario(factory, monkeypatch, clock, app):
    """Expired leases, a stalled batch and a retryable failure, all at once."""
    leased, _t, users = _batch(factory, 4, concurrency=2)
    claims = [runner.claim_next(leased.id), runner.claim_next(leased.id)]
    stalled, _t, _u = _batch(factory, 3, users=users)
    failed, failed_task, _u = _fail_unexpectedly_at_limit(factory, monkeypatch, clock, users=users)
    monkeypatch.setitem(app.config, "BATCH_RETRY_LIMIT", 3)
    _age(stalled.id, app.config["BATCH_STALL_SECONDS"] + 1, clock)
    clock.advance(app.config["BATCH_LEASE_SECONDS"] + 1)
    scenario = {"leased": (leased.id, [c.item_id for c in claims]), "stalled": stalled.id,
                "failed": (failed.id, failed_task.id)}
    db.session.rollback()  # on SQLite an open transaction would hold the write lock
    return scenario


def _run_at_once(app, now, runs=2):
    """Run ``recovery.recover`` in ``runs`` threads released at the same moment."""
    start = threading.Barrier(runs)
    results, errors = [], []

    def one_recovery():
        with app.app_context():
            try:
                start.wait()
                results.append(recovery.recover(now))
            except Exception as exc:  # reported below, not lost in the thread
                errors.append(exc)

    threads = [threading.Thread(target=one_recovery) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def test_two_recoveries_at_once_do_each_thing_once(factory, monkeypatch, clock, app):
    scenario = _recovery_scenario(factory, monkeypatch, clock, app)
    results = _run_at_once(app, clock.now())

    assert sum(r["reclaimed"] for r in results) == 2
    assert sum(r["retried"] for r in results) == 1
    assert sum(r["stalled"] for r in results) == 1
    leased_id, leased_items = scenario["leased"]
    for item_id in leased_items:
        item = db.session.get(BatchItem, item_id)
        assert (item.status, item.retry_count) == ("pending", 1)
        assert db.session.execute(db.select(db.func.count(BatchItemAttempt.id)).where(
            BatchItemAttempt.item_id == item_id)).scalar() == 1
    failed_id, failed_task = scenario["failed"]
    assert _item(failed_id, failed_task).retry_count == 2
    assert db.session.execute(db.select(db.func.count(BatchEvent.id)).where(
        BatchEvent.action == "retried")).scalar() == 1
    for batch_id in (leased_id, scenario["stalled"], failed_id):
        assert_counters_match_items(batch_id)
    # a third run finds nothing left to do
    assert recovery.recover(clock.now()) == {"reclaimed": 0, "retried": 0, "closed": 0,
                                             "stalled": 0, "stuck_repaired": 0,
                                             "stuck_unrepaired": 0, "restart": []}


def test_a_recovery_working_from_a_stale_list_does_nothing_twice(factory, monkeypatch, clock, app):
    """The race two recoveries can have: both read what to do before either acted.
    Each step re-checks under a row lock, so the later one changes nothing."""
    scenario = _recovery_scenario(factory, monkeypatch, clock, app)
    now = clock.now()
    since = now - recovery.RECENT_FAILURES
    expired = recovery.expired_leases(now)
    failures = recovery.batches_with_recent_unexpected_failures(since, app.config["BATCH_RETRY_LIMIT"])
    stalled = recovery.stalled_batches(now)
    assert scenario["stalled"] in stalled and len(expired) == 2 and len(failures) == 1
    monkeypatch.setattr(recovery, "expired_leases", lambda now: expired)
    monkeypatch.setattr(recovery, "batches_with_recent_unexpected_failures", lambda since, limit: failures)
    monkeypatch.setattr(recovery, "stalled_batches", lambda now=None: stalled)

    first, second = recovery.recover(now), recovery.recover(now)
    assert (first["reclaimed"], first["retried"], first["stalled"]) == (2, 1, 1)
    assert second == {"reclaimed": 0, "retried": 0, "closed": 0, "stalled": 0, "stuck_repaired": 0,
                      "stuck_unrepaired": 0, "restart": []}
    for batch_id in (scenario["leased"][0], scenario["stalled"], scenario["failed"][0]):
        assert_counters_match_items(batch_id)


def test_recovery_job_enqueues_lanes_for_restarted_batches_only(factory, app, clock):
    stalled, _t, users = _batch(factory, 8, concurrency=3)
    quiet, _t, _u = _batch(factory, 2, users=users)
    _age(stalled.id, app.config["BATCH_STALL_SECONDS"] + 1, clock)
    queue = get_queue()

    # As many lanes as its concurrency; on SQLite, where lanes take turns, one.
    expected = 1 if db.engine.dialect.name == "sqlite" else 3
    periodic.recover_batches()
    lanes = [job for job in queue.get_jobs()]
    assert [(job.func_name, job.args) for job in lanes] == [("portal.jobs.batch_jobs.run_batch_lane", (stalled.id,))] * expected
    periodic.recover_batches()  # the batch counts as restarted now
    assert queue.count == expected
    assert quiet.id not in {job.args[0] for job in queue.get_jobs()}
