"""rq-scheduler with the portal's periodic jobs kept registered.

Each loop re-registers any periodic job Redis lost (restart, FLUSHALL) under a
fixed id, so starting two schedulers, or one twice, never duplicates a job,
and writes a heartbeat the admin health page shows.
"""
import time
from datetime import datetime, timezone

from rq_scheduler import Scheduler

from portal.jobs.periodic import periodic_jobs

BEAT_KEY = "portal:scheduler:beat"


class PortalScheduler(Scheduler):
    def __init__(self, *args, config, **kwargs):
        super().__init__(*args, **kwargs)
        self.portal_config = config

    def sync_periodic_jobs(self):
        registered = 0
        for job_id, func, interval in periodic_jobs(self.portal_config):
            if job_id not in self:
                self.schedule(scheduled_time=datetime.now(timezone.utc), func=func, interval=interval,
                              repeat=None, id=job_id, result_ttl=interval * 2, timeout=300)
                registered += 1
        return registered

    def enqueue_jobs(self):
        self.sync_periodic_jobs()
        self.connection.set(BEAT_KEY, str(time.time()))
        return super().enqueue_jobs()


def last_beat(connection):
    value = connection.get(BEAT_KEY)
    return float(value) if value else None
