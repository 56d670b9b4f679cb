"""The scheduler keeps the periodic jobs registered under fixed ids: once, again
after Redis lost them, again when their interval changed, and two schedulers
enqueue a due job once. Runs against the test Redis database (emptied per test)."""
import time

import redis
from rq_scheduler import Scheduler

from portal.infra.queueing import get_queue, get_redis
from portal.jobs import scheduler as scheduler_module
from portal.jobs.periodic import RECOVER_JOB_ID, SWEEP_JOB_ID, periodic_jobs
from portal.jobs.scheduler import PortalScheduler, last_beat


def _scheduler(app, **config):
    settings = dict(app.config, **config)
    return PortalScheduler(queue=get_queue(), connection=get_redis(), interval=1, config=settings)


def _registered():
    return [job_id.decode() for job_id in get_redis().zrange(Scheduler.scheduled_jobs_key, 0, -1)]


def _jobs(scheduler, job_id):
    return [job for job in scheduler.get_jobs() if job.id == job_id]


def test_periodic_jobs_are_registered_once_under_fixed_ids(app):
    scheduler = _scheduler(app)
    assert scheduler.sync_periodic_jobs() == len(periodic_jobs(app.config))
    assert scheduler.sync_periodic_jobs() == 0
    assert _scheduler(app).sync_periodic_jobs() == 0  # a second scheduler adds nothing
    assert _registered() == [RECOVER_JOB_ID, SWEEP_JOB_ID]
    (job,) = _jobs(scheduler, RECOVER_JOB_ID)
    assert job.func_name == "portal.jobs.periodic.recover_batches"
    assert job.meta["interval"] == app.config["RECOVERY_INTERVAL_SECONDS"]
    (sweep,) = _jobs(scheduler, SWEEP_JOB_ID)
    assert sweep.func_name == "portal.jobs.notice_jobs.sweep_deliveries"
    assert sweep.meta["interval"] == app.config["NOTICE_SWEEP_INTERVAL_SECONDS"]


def test_registrations_redis_lost_come_back(app):
    scheduler = _scheduler(app)
    scheduler.sync_periodic_jobs()
    get_redis().flushdb()  # what a restart without persistence leaves
    assert scheduler.sync_periodic_jobs() == len(periodic_jobs(app.config))
    get_redis().delete(f"rq:job:{RECOVER_JOB_ID}")  # the job's hash alone expired
    assert scheduler.sync_periodic_jobs() == 1
    assert _registered() == [RECOVER_JOB_ID, SWEEP_JOB_ID]


def test_a_changed_interval_replaces_the_registration(app):
    _scheduler(app).sync_periodic_jobs()
    changed = _scheduler(app, RECOVERY_INTERVAL_SECONDS=7)
    assert changed.sync_periodic_jobs() == 1
    assert _registered() == [RECOVER_JOB_ID, SWEEP_JOB_ID]
    (job,) = _jobs(changed, RECOVER_JOB_ID)
    assert job.meta["interval"] == 7


def test_periodic_jobs_no_longer_listed_are_cancelled_and_others_kept(app):
    from datetime import datetime, timezone
    scheduler = _scheduler(app)
    when = datetime.now(timezone.utc)
    scheduler.schedule(scheduled_time=when, func="portal.jobs.periodic.recover_batches",
                       interval=60, repeat=None, id="portal-retired-job")
    scheduler.schedule(scheduled_time=when, func="portal.jobs.periodic.recover_batches",
                       interval=60, repeat=None, id="someone-elses-job")
    scheduler.sync_periodic_jobs()
    assert sorted(_registered()) == sorted([RECOVER_JOB_ID, SWEEP_JOB_ID, "someone-elses-job"])


def test_two_schedulers_enqueue_a_due_periodic_job_once(app):
    first, second = _scheduler(app), _scheduler(app)
    first.run(burst=True)   # registers the job due now, and enqueues it
    second.run(burst=True)  # finds it registered and not due again yet
    queue = get_queue()
    assert [job.id for job in queue.get_jobs()] == [RECOVER_JOB_ID, SWEEP_JOB_ID]
    assert _registered() == [RECOVER_JOB_ID, SWEEP_JOB_ID]
    assert last_beat(get_redis()) is not None


def test_scheduler_waits_for_redis_instead_of_exiting(app, monkeypatch):
    scheduler = _scheduler(app)
    outcomes = [redis.exceptions.ConnectionError("Connection refused"), "ran"]
    names = []

    def loop_once(self, burst=False):
        names.append(self.name)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(Scheduler, "run", loop_once)
    monkeypatch.setattr(scheduler_module.time, "sleep", lambda seconds: None)
    assert scheduler.run() == "ran"
    assert len(names) == 2 and names[0] != names[1]  # back under a fresh name


def test_heartbeat_is_written_each_loop(app):
    scheduler = _scheduler(app)
    assert last_beat(get_redis()) is None
    before = time.time()
    scheduler.register_birth()
    scheduler.heartbeat()
    assert before <= last_beat(get_redis()) <= time.time()
