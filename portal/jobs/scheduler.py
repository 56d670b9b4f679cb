"""rq-scheduler with the portal's periodic jobs kept registered.

Redis without persistence forgets scheduled jobs on a restart or FLUSHALL, so
every loop that holds rq-scheduler's lock first registers again any periodic
job Redis does not hold (or holds with another function or interval) under its
fixed id. Registering under a fixed id overwrites rather than adds, so two
schedulers, or one started twice, never duplicate a job. Every loop also
writes a heartbeat the admin health page shows, and a lost Redis connection
makes the scheduler wait and reconnect instead of exiting.
"""
import logging
import time
import uuid
from datetime import datetime, timezone

import redis
from rq.exceptions import NoSuchJobError
from rq_scheduler import Scheduler

from portal.infra.queueing import job_path, queue_for
from portal.jobs.periodic import PERIODIC_PREFIX, periodic_jobs

log = logging.getLogger(__name__)

BEAT_KEY = "portal:scheduler:beat"
REDIS_RETRY_MAX_SECONDS = 30
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class PortalScheduler(Scheduler):
    def __init__(self, *args, config, **kwargs):
        super().__init__(*args, **kwargs)
        self.portal_config = config

    def _registered_as(self, job_id, func, interval):
        """True when Redis holds ``job_id`` scheduled with this job function and interval."""
        if job_id not in self:
            return False
        try:
            job = self.job_class.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            return False
        return job.func_name == job_path(func) and job.meta.get("interval") == int(interval)

    def cancel_stale_periodic_jobs(self, listed):
        """Cancel the portal's periodic jobs that are no longer listed; returns how many."""
        stale = [job for job in self.get_jobs()
                 if job.id.startswith(PERIODIC_PREFIX) and job.id not in listed]
        for job in stale:
            self.cancel(job)
            log.info("cancelled periodic job %s: no longer listed", job.id)
        return len(stale)

    def sync_periodic_jobs(self):
        """Register the periodic jobs Redis lost or holds differently, cancel the
        ones no longer listed; returns how many were registered."""
        jobs = periodic_jobs(self.portal_config)
        self.cancel_stale_periodic_jobs({job_id for job_id, _func, _interval in jobs})
        registered = 0
        for job_id, func, interval in jobs:
            if self._registered_as(job_id, func, interval):
                continue
            # On the queue and with the timeout declared with the job. result_ttl=-1
            # (rq-scheduler's own default for interval jobs) keeps the job's hash until its
            # next run, however long the queue is.
            spec = func.job_spec
            self.schedule(scheduled_time=datetime.now(timezone.utc), func=func, interval=interval,
                          repeat=None, id=job_id, result_ttl=-1, timeout=spec.job_timeout(),
                          queue_name=queue_for(spec.queue).name)
            log.info("registered periodic job %s every %ss", job_id, interval)
            registered += 1
        return registered

    def enqueue_jobs(self):
        """Runs only while this scheduler holds rq-scheduler's lock."""
        self.sync_periodic_jobs()
        return super().enqueue_jobs()

    def heartbeat(self):
        super().heartbeat()
        self.connection.set(BEAT_KEY, str(time.time()))

    def run(self, burst=False):
        """rq-scheduler's loop, resumed under a fresh name after a Redis outage."""
        wait = 1
        while True:
            try:
                return super().run(burst=burst)
            except REDIS_ERRORS as exc:
                log.warning("Redis unreachable (%s); the scheduler retries in %ss", exc, wait)
                time.sleep(wait)
                wait = min(wait * 2, REDIS_RETRY_MAX_SECONDS)
                # The old name may still look alive in Redis (its death was not recorded).
                self.name = uuid.uuid4().hex
                self._lock_acquired = False


def last_beat(connection):
    """Unix time of the last scheduler heartbeat, or None."""
    value = connection.get(BEAT_KEY)
    return float(value) if value else None
