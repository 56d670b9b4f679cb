"""Fault injection with real processes: workers (``flask --app app worker``),
two schedulers (``flask --app app scheduler``) and Redis, on the test
database. After each fault the batch finishes by itself, every task is
approved exactly once, and the batch counters equal its items. The SIGKILL and
FLUSHALL faults also hit a batch on a routed node of a BPMN process: there each
instance must end up waiting at the one node its data route it to, once.

The subprocesses run recovery every second and call a batch stalled after two
seconds without progress. Leases last BATCH_LEASE_SECONDS (two minutes); where
a fault leaves a lease behind, the test lets it run out by moving its expiry
into the past instead of waiting.
"""
import random
import signal
import time
from datetime import timedelta

import pytest
from rq import Worker
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from faults_support import (ROUTED_FORM, DatabaseHold, RedisServer, Schedulers, Supervisor,
                            assert_each_instance_moved_on_once,
                            assert_exactly_once_and_consistent, attempts_by, backends_of,
                            backends_waiting_on_a_lock, expire_leases, finished, fresh_batch,
                            is_postgres, items, kill_group, routed_tasks, running_item_ids,
                            set_next_attempt, terminate_backends, tree_pids, wait_until_quiet)
from support import wait_for
from portal.batches import dispatch
from portal.infra.extensions import db
from portal.infra.queueing import get_queue, get_redis
from portal.jobs.periodic import PERIODIC_JOBS, RECOVER_JOB_ID
from portal.models import BatchItemAttempt
from portal.models.base import utcnow

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
    return factory.batch(users["alice"], tasks, comment="fault test", concurrency=concurrency)


def _make_batch_of(process, factory, count, concurrency):
    """A batch on the JSON expense process's first node, or on the routed node of a BPMN
    process; returns it and {instance id: node it must move on to} (None for JSON)."""
    if process == "json":
        return _make_batch(factory, count, concurrency), None
    users = factory.standard()
    tasks, routes = routed_tasks(count, users["admin"])
    batch = factory.batch(users["alice"], tasks, comment="fault test", concurrency=concurrency,
                          form=ROUTED_FORM)
    return batch, routes


def _check_routes(routes):
    if routes is not None:
        assert_each_instance_moved_on_once(routes)


def _fault_name(fault, process):
    return fault if process == "json" else f"{fault} {process}"


def _start(batch):
    """Hand the batch to the workers; returns its id. The test's session leaves
    no transaction open: on SQLite it would hold the write lock."""
    batch_id = batch.id
    dispatch.start(batch)
    db.session.rollback()
    return batch_id


def _progress(batch_id, at_least):
    wait_for(lambda: fresh_batch(batch_id).success >= at_least, timeout=90,
             message=f"{at_least} items done")


def _finishes(batch_id):
    return wait_for(lambda: finished(batch_id), timeout=120, message="batch finished by itself")


def _report(fault, since, **facts):
    """One line per fault for ``pytest -s`` (what docs/operations.md quotes); not an assertion."""
    details = "; ".join(f"{key.replace('_', ' ')}: {value}" for key, value in facts.items())
    print(f"\n[{fault}] finished {time.monotonic() - since:.1f}s after the fault; {details}")


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


@pytest.mark.parametrize("process", ["json", "bpmn"])
def test_a_sigkill_mid_item_loses_and_repeats_nothing(factory, workers, schedulers, process):
    batch, routes = _make_batch_of(process, factory, 400, concurrency=4)
    schedulers.start(2, FAST_RECOVERY)
    victims = workers.start(2, extra_env=FAST_RECOVERY)
    batch_id = _start(batch)
    _progress(batch_id, 10)

    hold, orphans = _claims_held_mid_item(batch_id, workers_expected=len(victims))
    fault_at = time.monotonic()
    for proc in victims:  # the worker, its work-horse and its scheduler: the whole group
        kill_group(proc, signal.SIGKILL)
    for proc in victims:
        proc.wait(timeout=30)
    hold.release()
    assert orphans, "the workers held no claim when they were killed"

    workers.start(2, extra_env=FAST_RECOVERY)
    # Everything else finishes; the dead workers' items wait for their leases.
    wait_for(lambda: fresh_batch(batch_id).pending == 0
             and running_item_ids(batch_id) == orphans, timeout=120,
             message="all but the orphaned items done")
    expire_leases(orphans)
    expired_at = time.monotonic()
    _finishes(batch_id)
    assert_exactly_once_and_consistent(batch_id)
    assert {(item.status, item.retry_count) for item in items(orphans)} == {("success", 1)}
    _check_routes(routes)
    _report(_fault_name("a", process), fault_at, orphaned_claims=len(orphans),
            seconds_from_lease_expiry_to_finish=f"{time.monotonic() - expired_at:.1f}")


def _freeze_redis_after_commits(batch_id, server, workers_running):
    """Freeze Redis until the running lanes have committed items and wait on it.

    Each lane commits items to the end of its slice, then blocks on its first
    Redis call (requeueing itself, or RQ marking its job done). A lane that
    had not claimed anything yet commits nothing, so the freeze is repeated
    until some work-horse committed items. Returns how many.
    """
    for _attempt in range(5):
        server.freeze()
        wait_until_quiet(batch_id)
        horses = {pid for proc in workers_running for pid in tree_pids(proc)}
        committed = attempts_by(batch_id, horses)
        if committed:
            return committed
        server.thaw()
        _progress(batch_id, fresh_batch(batch_id).success + 5)
    pytest.fail("no lane was running when Redis froze")


def test_b_kill_after_commit_before_rq_marks_the_job_done(factory, private_redis, workers,
                                                          schedulers):
    env = {**FAST_RECOVERY, "REDIS_URL": private_redis.url}
    # Lanes finish their slice while Redis is frozen: the batch must outlast it.
    batch = _make_batch(factory, 1500, concurrency=2)
    schedulers.start(2, env)
    victims = workers.start(2, extra_env=env)
    batch_id = _start(batch)
    _progress(batch_id, 10)

    committed = _freeze_redis_after_commits(batch_id, private_redis, victims)
    fault_at = time.monotonic()
    for proc in victims:
        kill_group(proc, signal.SIGKILL)
    for proc in victims:
        proc.wait(timeout=30)
    private_redis.thaw()
    never_done = StartedJobRegistry(queue=get_queue()).get_job_ids()
    assert never_done, "RQ should still list the killed lanes as started"
    assert fresh_batch(batch_id).pending > 0

    workers.start(2, extra_env=env)
    _finishes(batch_id)
    assert_exactly_once_and_consistent(batch_id)
    _report("b", fault_at, items_committed_by_killed_jobs=committed,
            jobs_RQ_never_marked_done=len(never_done))


def _current_job_of(proc):
    for worker in Worker.all(connection=get_redis()):
        if worker.pid == proc.pid:
            return worker.get_current_job_id()
    return None


def test_c_frozen_worker_overlaps_its_rerun_and_takes_effect_once(factory, workers, schedulers):
    batch = _make_batch(factory, 400, concurrency=2)
    schedulers.start(2, FAST_RECOVERY)
    (victim,) = workers.start(1, extra_env=FAST_RECOVERY)
    batch_id = _start(batch)
    _progress(batch_id, 10)

    hold, stale = _claims_held_mid_item(batch_id, workers_expected=1)
    fault_at = time.monotonic()
    kill_group(victim, signal.SIGSTOP)
    if is_postgres():
        # What idle_in_transaction_session_timeout does to a frozen client: its
        # transaction is rolled back, the rows it locked are free again.
        terminate_backends(backends_of([victim]))
    hold.release()
    assert stale, "the frozen worker held no claim"
    frozen_job = _current_job_of(victim)
    assert frozen_job, "the frozen worker should be inside a lane job"

    workers.start(2, extra_env=FAST_RECOVERY)
    wait_for(lambda: fresh_batch(batch_id).pending == 0
             and running_item_ids(batch_id) == stale, timeout=120,
             message="all but the frozen worker's items done")
    expire_leases(stale)  # the frozen worker is past its lease: recovery re-runs its items
    expired_at = time.monotonic()
    _finishes(batch_id)
    finished_at = time.monotonic()

    kill_group(victim, signal.SIGCONT)  # the first run wakes up and tries to finish
    wait_for(lambda: Job.fetch(frozen_job, connection=get_redis()).get_status()
             in ("finished", "failed"), timeout=90, message="the frozen run ended")
    assert victim.poll() is None, "the woken worker should keep running"
    assert_exactly_once_and_consistent(batch_id)
    assert {(item.status, item.retry_count) for item in items(stale)} == {("success", 1)}
    _report("c", fault_at, claims_of_the_frozen_worker=len(stale),
            seconds_from_lease_expiry_to_finish=f"{finished_at - expired_at:.1f}")


@pytest.mark.parametrize("process", ["json", "bpmn"])
def test_d_flushall_mid_batch(factory, private_redis, workers, schedulers, process):
    env = {**FAST_RECOVERY, "REDIS_URL": private_redis.url}
    batch, routes = _make_batch_of(process, factory, 300, concurrency=3)
    schedulers.start(2, env)
    workers.start(2, extra_env=env)
    batch_id = _start(batch)
    _progress(batch_id, 10)
    # The rest waits for a retry (as after a burst of unexpected errors): the
    # lanes end and leave delayed lanes behind, held by Redis alone.
    assert set_next_attempt(batch_id, utcnow() + timedelta(minutes=5)) > 0
    quiet = wait_until_quiet(batch_id)
    assert ScheduledJobRegistry(queue=get_queue()).count >= 1, quiet
    assert private_redis.client().zscore(SCHEDULED_JOBS, RECOVER_JOB_ID) is not None

    private_redis.client().flushall()  # queued and delayed lanes, registrations: all gone
    fault_at = time.monotonic()
    set_next_attempt(batch_id, None)  # the backoff is over; no lane is left to notice

    wait_for(lambda: private_redis.client().zscore(SCHEDULED_JOBS, RECOVER_JOB_ID) is not None,
             timeout=60, message="periodic job registered again")
    _finishes(batch_id)  # only recovery can restart it now
    assert_exactly_once_and_consistent(batch_id)
    assert private_redis.client().zcard(SCHEDULED_JOBS) == len(PERIODIC_JOBS)  # each once
    assert len(schedulers.alive()) == 2
    _check_routes(routes)
    _report(_fault_name("d", process), fault_at,
            workers_alive=f"{sum(p.poll() is None for p in workers.procs)}/2",
            schedulers_alive="2/2")


def test_e_redis_restart_mid_batch(factory, private_redis, workers, schedulers):
    env = {**FAST_RECOVERY, "REDIS_URL": private_redis.url}
    batch = _make_batch(factory, 1500, concurrency=3)
    schedulers.start(2, env)
    workers.start(2, extra_env=env)
    supervisor = Supervisor(workers, env)
    batch_id = _start(batch)
    _progress(batch_id, 20)

    private_redis.stop()  # no persistence: queued lanes and registrations are lost
    fault_at = time.monotonic()
    stopped_at = fresh_batch(batch_id).success
    quiet = wait_until_quiet(batch_id)
    assert quiet.pending > 0, "the batch should outlast the lanes' slices"
    private_redis.start()

    wait_for(lambda: supervisor.check() and finished(batch_id), timeout=120,
             message="batch finished by itself")
    assert_exactly_once_and_consistent(batch_id)
    assert len(schedulers.alive()) == 2, "a scheduler should outlive a Redis restart"
    wait_for(lambda: private_redis.client().zscore(SCHEDULED_JOBS, RECOVER_JOB_ID) is not None,
             timeout=90, message="periodic job registered again")
    _report("e", fault_at, items_done_while_Redis_was_down=quiet.success - stopped_at,
            workers_that_exited_and_were_restarted=f"{supervisor.restarts}/2")


def test_f_database_connection_dropped_mid_item(factory, workers, schedulers):
    if not is_postgres():
        pytest.skip("terminating a worker's database session needs PostgreSQL (SQLite has "
                    "no server; tests/test_recovery.py drops the connection in-process)")
    batch = _make_batch(factory, 400, concurrency=4)
    schedulers.start(2, FAST_RECOVERY)
    workers.start(2, extra_env=FAST_RECOVERY)
    batch_id = _start(batch)
    _progress(batch_id, 10)

    hold, in_flight = _claims_held_mid_item(batch_id, workers_expected=2)
    fault_at = time.monotonic()
    terminated = terminate_backends(backends_waiting_on_a_lock())
    hold.release()
    assert terminated >= 1 and in_flight

    _finishes(batch_id)
    assert_exactly_once_and_consistent(batch_id)
    db.session.rollback()
    lost = db.session.execute(db.select(BatchItemAttempt).where(
        BatchItemAttempt.batch_id == batch_id, BatchItemAttempt.outcome == "error")).scalars().all()
    assert lost and all("OperationalError" in attempt.error for attempt in lost)
    retried = {item.id: item.retry_count for item in items([a.item_id for a in lost])}
    assert set(retried.values()) == {1}
    _report("f", fault_at, backends_terminated=terminated, items_retried=len(retried))
