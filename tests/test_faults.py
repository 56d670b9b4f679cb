"""Fault injection with real processes: workers (``flask --app app worker``),
two schedulers (``flask --app app scheduler``) and Redis, on the test
database. After each fault the batch finishes by itself, every task is
approved exactly once, and the batch counters equal its items.

The subprocesses run recovery every second and call a batch stalled after two
seconds without progress. Leases last BATCH_LEASE_SECONDS (two minutes); where
a fault leaves a lease behind, the test lets it run out by moving its expiry
into the past instead of waiting.
"""
import random
import signal
import time

import pytest
from rq import Worker
from rq.job import Job
from rq.registry import StartedJobRegistry

from faults_support import (DatabaseHold, RedisServer, Schedulers, assert_exactly_once_and_consistent,
                            backends_of, backends_waiting_on_a_lock, expire_leases, finished,
                            fresh_batch, is_postgres, items, kill_group, running_item_ids,
                            terminate_backends)
from support import GOOD_FORM, wait_for
from portal.batches import creation, dispatch, runner
from portal.extensions import db
from portal.jobs.periodic import RECOVER_JOB_ID
from portal.models import BatchItemAttempt
from portal.queueing import get_queue, get_redis

pytestmark = pytest.mark.slow

FAST_RECOVERY = {"BATCH_STALL_SECONDS": "2", "RECOVERY_INTERVAL_SECONDS": "1"}
SCHEDULED_JOBS = "rq:scheduler:scheduled_jobs"


@pytest.fixture
def schedulers(app):
    pool = Schedulers()
    yield pool
    pool.stop()


@pytest.fixture
def private_redis(app, monkeypatch):
    """A Redis server of this test only; the test process and its children use it."""
    server = RedisServer().start()
    monkeypatch.setitem(app.config, "REDIS_URL", server.url)
    yield server
    server.close()


def _make_batch(factory, count, concurrency):
    users = factory.standard()
    tasks = factory.tasks(count, starter=users["admin"])
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[t.id for t in tasks],
                                  action="approve", comment="fault test", form=GOOD_FORM,
                                  concurrency=concurrency)
    db.session.commit()
    return batch


def _progress(batch_id, at_least):
    wait_for(lambda: fresh_batch(batch_id).success >= at_least, timeout=90,
             message=f"{at_least} items done")


def _finishes(batch_id):
    import support; print("\nLOGS", support.LOG_DIR)
    return wait_for(lambda: finished(batch_id), timeout=120, message="batch finished by itself")


def _claims_held_mid_item(batch_id, workers_expected):
    """Hold the database while the workers are inside an item; returns the hold
    and the claimed items.

    On PostgreSQL the workers wait inside their item transactions. On SQLite
    they wait at the start of their next transaction, claims committed; the
    hold may land while every lane is between two RQ jobs, holding nothing, so
    it is taken again until some item is claimed.
    """
    for _attempt in range(300):
        hold = DatabaseHold().acquire()
        if is_postgres():
            wait_for(lambda: len(backends_waiting_on_a_lock()) >= workers_expected, timeout=60,
                     message="workers blocked inside an item transaction")
        claimed = sorted(row[0] for row in hold.read(
            "SELECT id FROM batch_item WHERE batch_id = :batch AND status = 'running'",
            batch=batch_id))
        if claimed:
            return hold, claimed
        (left,) = hold.read("SELECT pending FROM batch WHERE id = :batch", batch=batch_id)[0]
        hold.release()
        if not left:
            pytest.fail("the batch ended before the fault was injected: make it larger")
        time.sleep(random.uniform(0.005, 0.04))  # out of step with the lanes' rhythm
    pytest.fail("never caught a worker holding a claim")


def test_a_sigkill_mid_item_loses_and_repeats_nothing(factory, workers, schedulers):
    batch = _make_batch(factory, 400, concurrency=4)
    schedulers.start(2, FAST_RECOVERY)
    victims = workers.start(2, extra_env=FAST_RECOVERY)
    dispatch.start(batch)
    _progress(batch.id, 10)

    hold, orphans = _claims_held_mid_item(batch.id, workers_expected=len(victims))
    for proc in victims:  # the worker, its work-horse and its scheduler: the whole group
        kill_group(proc, signal.SIGKILL)
    for proc in victims:
        proc.wait(timeout=30)
    hold.release()
    assert orphans, "the workers held no claim when they were killed"

    import support; print("\nLOGS", support.LOG_DIR, orphans)
    workers.start(2, extra_env=FAST_RECOVERY)
    # Everything else finishes; the dead workers' items wait for their leases.
    wait_for(lambda: fresh_batch(batch.id).pending == 0
             and running_item_ids(batch.id) == orphans, timeout=120,
             message="all but the orphaned items done")
    expire_leases(orphans)
    _finishes(batch.id)
    assert_exactly_once_and_consistent(batch.id)
    assert {(item.status, item.retry_count) for item in items(orphans)} == {("success", 1)}


def test_b_kill_after_commit_before_rq_marks_the_job_done(factory, workers, schedulers,
                                                          private_redis):
    env = {**FAST_RECOVERY, "REDIS_URL": private_redis.url}
    batch = _make_batch(factory, 400, concurrency=2)
    schedulers.start(2, env)
    victims = workers.start(2, extra_env=env)
    dispatch.start(batch)
    _progress(batch.id, 10)

    private_redis.freeze()  # lanes keep committing, then block on their first Redis call
    frozen_at = fresh_batch(batch.id).success
    wait_for(lambda: fresh_batch(batch.id).running == 0, timeout=60,
             message="every lane committed its last item and waits for Redis")
    for proc in victims:
        kill_group(proc, signal.SIGKILL)
    for proc in victims:
        proc.wait(timeout=30)
    private_redis.thaw()
    committed_unacknowledged = fresh_batch(batch.id).success - frozen_at
    never_done = StartedJobRegistry(queue=get_queue()).get_job_ids()
    assert never_done, "RQ should still list the killed lanes as started"
    print(f"\n[b] items committed while Redis was frozen: {committed_unacknowledged}; "
          f"jobs RQ never marked done: {len(never_done)}")

    workers.start(2, extra_env=env)
    _finishes(batch.id)
    assert_exactly_once_and_consistent(batch.id)


def _current_job_of(proc):
    for worker in Worker.all(connection=get_redis()):
        if worker.pid == proc.pid:
            return worker.get_current_job_id()
    return None


def test_c_frozen_worker_overlaps_its_rerun_and_takes_effect_once(factory, workers, schedulers):
    batch = _make_batch(factory, 400, concurrency=2)
    schedulers.start(2, FAST_RECOVERY)
    (victim,) = workers.start(1, extra_env=FAST_RECOVERY)
    dispatch.start(batch)
    _progress(batch.id, 10)

    hold, stale = _claims_held_mid_item(batch.id, workers_expected=1)
    kill_group(victim, signal.SIGSTOP)
    if is_postgres():
        # What idle_in_transaction_session_timeout does to a frozen client: its
        # transaction is rolled back, the rows it locked are free again.
        terminate_backends(backends_of([victim]))
    hold.release()
    assert stale, "the frozen worker held no claim"
    frozen_job = _current_job_of(victim)

    workers.start(2, extra_env=FAST_RECOVERY)
    wait_for(lambda: fresh_batch(batch.id).pending == 0
             and running_item_ids(batch.id) == stale, timeout=120,
             message="all but the frozen worker's items done")
    expire_leases(stale)  # the frozen worker is past its lease: recovery re-runs its items
    _finishes(batch.id)

    kill_group(victim, signal.SIGCONT)  # the first run wakes up and tries to finish
    if frozen_job:
        wait_for(lambda: Job.fetch(frozen_job, connection=get_redis()).get_status()
                 in ("finished", "failed"), timeout=90, message="the frozen run ended")
    assert victim.poll() is None, "the woken worker should keep running"
    assert_exactly_once_and_consistent(batch.id)
    assert {(item.status, item.retry_count) for item in items(stale)} == {("success", 1)}


def test_d_flushall_mid_batch(factory, workers, schedulers, private_redis):
    env = {**FAST_RECOVERY, "REDIS_URL": private_redis.url}
    batch = _make_batch(factory, 200, concurrency=3)
    schedulers.start(2, env)
    workers.start(2, extra_env=env)
    dispatch.start(batch)
    _progress(batch.id, 20)
    wait_for(lambda: private_redis.client().zscore(SCHEDULED_JOBS, RECOVER_JOB_ID) is not None,
             timeout=60, message="periodic job registered")

    private_redis.client().flushall()  # queued lanes, scheduled retries, registrations: gone

    wait_for(lambda: private_redis.client().zscore(SCHEDULED_JOBS, RECOVER_JOB_ID) is not None,
             timeout=60, message="periodic job registered again")
    _finishes(batch.id)
    assert_exactly_once_and_consistent(batch.id)
    assert private_redis.client().zcard(SCHEDULED_JOBS) == 1
    assert len(schedulers.alive()) == 2


def test_e_redis_restart_mid_batch(factory, workers, schedulers, private_redis):
    env = {**FAST_RECOVERY, "REDIS_URL": private_redis.url}
    batch = _make_batch(factory, 200, concurrency=3)
    schedulers.start(2, env)
    procs = workers.start(2, extra_env=env)
    dispatch.start(batch)
    _progress(batch.id, 20)

    private_redis.stop()
    stopped_at = fresh_batch(batch.id).success
    wait_for(lambda: fresh_batch(batch.id).running == 0, timeout=60,
             message="lanes ended while Redis was down")
    private_redis.start()

    _finishes(batch.id)
    assert_exactly_once_and_consistent(batch.id)
    print(f"\n[e] items done while Redis was down: {fresh_batch(batch.id).success - stopped_at}; "
          f"workers alive after the restart: {sum(p.poll() is None for p in procs)}/2; "
          f"schedulers alive: {len(schedulers.alive())}/2")
    assert len(schedulers.alive()) == 2


def test_f_database_connection_dropped_mid_item(factory, workers, schedulers):
    if not is_postgres():
        pytest.skip("terminating a worker's database session needs PostgreSQL "
                    "(SQLite has no server; tests/test_recovery.py drops the connection in-process)")
    batch = _make_batch(factory, 400, concurrency=4)
    schedulers.start(2, FAST_RECOVERY)
    workers.start(2, extra_env=FAST_RECOVERY)
    dispatch.start(batch)
    _progress(batch.id, 10)

    hold, in_flight = _claims_held_mid_item(batch.id, workers_expected=2)
    terminated = terminate_backends(backends_waiting_on_a_lock())
    hold.release()
    assert terminated >= 1 and in_flight

    _finishes(batch.id)
    assert_exactly_once_and_consistent(batch.id)
    db.session.rollback()
    lost = db.session.execute(db.select(BatchItemAttempt).where(
        BatchItemAttempt.batch_id == batch.id, BatchItemAttempt.outcome == "error")).scalars().all()
    assert lost and all("OperationalError" in attempt.error for attempt in lost)
    retried = {item.id: item.retry_count for item in items([a.item_id for a in lost])}
    assert set(retried.values()) == {1}
    print(f"\n[f] backends terminated: {terminated}; items retried after it: {len(retried)}")
