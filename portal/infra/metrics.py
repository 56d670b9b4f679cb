"""What operators watch: Prometheus metrics at ``/metrics`` (RQ's dashboard is ``portal.infra.admin_rq``).

Metrics (names and labels are listed in docs/operations.md, "Metrics, dashboard and logs"):

- Counted where things happen, in every process (gunicorn workers; RQ work-horses running lanes and recovery):
  the batch engine's signals (``portal.events``) and every HTTP request. prometheus-client runs in
  multiprocess mode: each process writes its values to files in one directory, ``PROMETHEUS_MULTIPROC_DIR``
  (when unset: ``<instance folder>/prometheus``, set here before any metric exists, so that the processes
  this one starts inherit it), and a scrape adds up every file there.
- Read at scrape time from the database and Redis, whichever process answers: batches by status, RQ queue
  lengths, the oldest waiting job's age, workers alive, the scheduler's last beat.

The directory must be emptied when the processes of a host start together (``clear_multiprocess_dir`` in a
launcher, or a systemd ``ExecStartPre``), and never while any of them runs: a running process
keeps writing to the file it opened. Files of processes that ended stay and keep counting in the totals,
which is what a counter needs. An RQ worker forks a work-horse per job; the horses of one worker take
turns on one set of files named after the worker (see ``_process_identity``), so jobs leave no file each.

``/metrics`` answers a request bearing ``Authorization: Bearer <METRICS_TOKEN>`` (when that setting is
set) or coming from an address in ``METRICS_ALLOWED_ADDRESSES``, and is a plain 404 to anyone else.
"""
import hmac
import ipaddress
import logging
import os
import re
import time
from datetime import timezone
from functools import wraps

from flask import Response, abort, current_app, request, request_finished, request_started
from rq import get_current_job

from portal import events

# The name it had before the module moved to portal/infra/: log filters and the dashboard's action
# lines (portal.infra.admin_rq) name it.
log = logging.getLogger("portal.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_DIR_NAME = "prometheus"
# Seconds: an item takes milliseconds to a few seconds, a page well under one.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STARTED_KEY = "portal.metrics.started"

_metrics = None


# --- the process's metrics ----------------------------------------------------------

_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9.-]")


def _process_identity():
    """Whose metric files this process writes: its pid's, except inside an RQ job.

    A worker forks one work-horse per job and runs one at a time, so its horses can take turns on one
    set of files named after the worker ("horse-<worker name>"): each reads the totals its predecessor
    left and adds to them. Named by pid, every job would leave files behind for each scrape to read.
    prometheus-client asks this on every update; a change of answer (a fork, a job starting) makes it
    reopen its files under the new name.
    """
    job = get_current_job()
    if job is not None:
        worker = job.worker_name or os.environ.get("RQ_WORKER_ID")
        if worker:
            return "horse-" + _UNSAFE_IN_FILE_NAME.sub("-", worker)
    return str(os.getpid())


def multiprocess_dir(app):
    """The directory every process of this deployment on this host writes its metric files to."""
    return os.environ.get(MULTIPROC_ENV) or os.path.join(app.instance_path, DEFAULT_DIR_NAME)


def clear_multiprocess_dir(app):
    """Remove the metric files of earlier runs: call when the host's processes start, before any of
    them (web, workers, scheduler) runs; returns how many files went."""
    path = multiprocess_dir(app)
    removed = 0
    if os.path.isdir(path):
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
                removed += 1
    return removed


def gunicorn_child_exit(_server, worker):
    """gunicorn's ``child_exit`` hook (``child_exit = portal.infra.metrics.gunicorn_child_exit`` in a
    gunicorn config file): the dead worker's live gauges leave the sums. The portal has no
    per-process gauge today, so this only keeps the directory right if one is added."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


class _Metrics:
    """The metric objects one process updates (made once per process, after the directory is set)."""

    def __init__(self):
        from prometheus_client import Counter, Histogram
        self.items_finished = Counter(
            "portal_batch_items_finished", "Batch items finished, by outcome and node id.",
            ["outcome", "node"], registry=None)
        self.item_duration = Histogram(
            "portal_batch_item_duration_seconds", "Time to run one batch item, by outcome.",
            ["outcome"], buckets=DURATION_BUCKETS, registry=None)
        self.items_retried = Counter(
            "portal_batch_items_retried", "Batch items sent back to run again, by who asked "
            "(manual: a person; automatic: the runner or recovery after an unexpected error).",
            ["kind"], registry=None)
        self.recovery_actions = Counter(
            "portal_recovery_actions", "What recovery did, by kind (reclaimed items, retried items, "
            "closed batches, stalled batches restarted).", ["kind"], registry=None)
        self.stuck_instances = Counter(
            "portal_stuck_instances", "Running instances recovery found waiting on nothing (no pending "
            "task), by outcome: repaired, or unrepaired (found again on every pass until dealt with).",
            ["outcome"], registry=None)
        self.http_requests = Counter(
            "portal_http_requests", "HTTP requests answered, by endpoint and status.",
            ["endpoint", "status"], registry=None)
        self.http_duration = Histogram(
            "portal_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint.",
            ["endpoint"], buckets=DURATION_BUCKETS, registry=None)


def _process_metrics(app):
    """This process's metrics, made on first use with the multiprocess directory in place."""
    global _metrics
    if _metrics is None:
        path = multiprocess_dir(app)
        os.makedirs(path, exist_ok=True)
        os.environ[MULTIPROC_ENV] = path  # processes started from here write there too
        from prometheus_client import values
        values.ValueClass = values.MultiProcessValue(_process_identity)
        _metrics = _Metrics()
    return _metrics


def _never_raises(receiver):
    """A metric that cannot be written must not fail the batch item or request that sent it."""
    @wraps(receiver)
    def guarded(*args, **kwargs):
        try:
            receiver(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.warning("metric not recorded by %s", receiver.__name__, exc_info=True)
    return guarded


@_never_raises
def _on_item_finished(_batch_id, outcome, node_id, seconds, **_extra):
    _metrics.items_finished.labels(outcome=outcome, node=str(node_id)).inc()
    _metrics.item_duration.labels(outcome=outcome).observe(max(seconds, 0))


@_never_raises
def _on_items_retried(_batch_id, count, automatic, **_extra):
    _metrics.items_retried.labels(kind="automatic" if automatic else "manual").inc(count)


@_never_raises
def _on_recovery_acted(kind, count, **_extra):
    _metrics.recovery_actions.labels(kind=kind).inc(count)


@_never_raises
def _on_stuck_instances(outcome, count, **_extra):
    _metrics.stuck_instances.labels(outcome=outcome).inc(count)


@_never_raises
def _on_request_started(_app, **_extra):
    request.environ[_STARTED_KEY] = time.perf_counter()


@_never_raises
def _on_request_finished(_app, response, **_extra):
    # The endpoint, not the path: ids in paths would make a series per object.
    endpoint = request.endpoint or "unmatched"
    _metrics.http_requests.labels(endpoint=endpoint, status=str(response.status_code)).inc()
    started = request.environ.get(_STARTED_KEY)
    if started is not None:
        _metrics.http_duration.labels(endpoint=endpoint).observe(time.perf_counter() - started)


# --- read at scrape time ------------------------------------------------------------

class PortalCollector:
    """Gauges read from the database and Redis when scraped (the same for every process)."""

    def describe(self):
        return []  # nothing to check at registration; collect() runs at scrape time only

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        up = GaugeMetricFamily("portal_metrics_source_up",
                               "1 when the scrape could read the source, else 0.", labels=["source"])
        for source, read in (("database", self._database), ("redis", self._redis)):
            try:
                families = list(read(GaugeMetricFamily))
            except Exception:  # noqa: BLE001 - a source that is down is what this reports
                log.warning("metrics: could not read the %s", source, exc_info=True)
                families = []
            up.add_metric([source], 1 if families else 0)
            yield from families
        yield up

    @staticmethod
    def _database(gauge):
        from sqlalchemy import func, select
        from portal.infra.extensions import db
        from portal.models import Batch
        from portal.models.batches import BATCH_STATUSES
        # The session's connection (on SQLite a second one would wait for the write lock an open
        # transaction holds); a transaction begun here ends here, one already open is left alone.
        began = not db.session().in_transaction()
        try:
            counts = dict(db.session.execute(
                select(Batch.status, func.count()).group_by(Batch.status)).all())
        finally:
            if began:
                db.session.rollback()
        batches = gauge("portal_batches", "Batches by status.", labels=["status"])
        for status in sorted(set(BATCH_STATUSES) | set(counts)):
            batches.add_metric([status], counts.get(status, 0))
        yield batches

    @staticmethod
    def _redis(gauge):
        from rq import Queue, Worker
        from rq.registry import FailedJobRegistry
        from portal.infra.queueing import get_redis
        from portal.jobs.scheduler import last_beat
        conn = get_redis()
        queues = Queue.all(connection=conn)
        if not any(q.name == current_app.config["QUEUE_NAME"] for q in queues):
            queues.append(Queue(current_app.config["QUEUE_NAME"], connection=conn))
        length = gauge("portal_rq_queue_length", "Jobs waiting in each RQ queue.", labels=["queue"])
        oldest = gauge("portal_rq_queue_oldest_job_age_seconds",
                       "How long the job at the head of each RQ queue has waited (0: none waits).",
                       labels=["queue"])
        failed = gauge("portal_rq_failed_jobs", "Jobs in each RQ queue's failed job registry.",
                       labels=["queue"])
        now = time.time()
        for queue in sorted(queues, key=lambda q: q.name):
            length.add_metric([queue.name], queue.count)
            oldest.add_metric([queue.name], _oldest_job_age(queue, now))
            failed.add_metric([queue.name], FailedJobRegistry(queue=queue).count)
        keys = Worker.all_keys(connection=conn)
        pipe = conn.pipeline()
        for key in keys:
            pipe.exists(key)
        alive = sum(1 for exists in (pipe.execute() if keys else []) if exists)
        workers = gauge("portal_rq_workers_alive", "RQ workers registered and alive.")
        workers.add_metric([], alive)
        yield from (length, oldest, failed, workers)
        beat = last_beat(conn)
        if beat is not None:
            age = gauge("portal_scheduler_last_beat_age_seconds",
                        "Seconds since the scheduler's last heartbeat.")
            age.add_metric([], max(now - beat, 0))
            yield age


def _oldest_job_age(queue, now):
    """Seconds the job at the head of ``queue`` has waited; 0 when none waits (read only:
    ``Queue.fetch_job`` would drop a dangling id from the queue)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    for job_id in queue.get_job_ids(0, 1):
        try:
            enqueued = Job.fetch(job_id, connection=queue.connection).enqueued_at
        except NoSuchJobError:
            return 0
        if enqueued is not None:
            if enqueued.tzinfo is None:  # RQ writes UTC
                enqueued = enqueued.replace(tzinfo=timezone.utc)
            return max(now - enqueued.timestamp(), 0)
    return 0


# --- /metrics ------------------------------------------------------------------------

def _address_allowed(address, allowed):
    """True when ``address`` is one of the comma separated addresses or networks in ``allowed``."""
    try:
        client = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if getattr(client, "ipv4_mapped", None):
        client = client.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for entry in (allowed or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            if client in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            log.warning("METRICS_ALLOWED_ADDRESSES: %r is not an address or network", entry)
    return False


def may_scrape():
    """A bearer token, when one is configured and sent, decides alone (a wrong one is refused
    from any address); else the client's address must be allowed."""
    token = current_app.config.get("METRICS_TOKEN") or ""
    header = request.headers.get("Authorization", "")
    if token and header[:7].lower() == "bearer ":
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    return _address_allowed(request.remote_addr, current_app.config.get("METRICS_ALLOWED_ADDRESSES"))


def metrics_view():
    if not may_scrape():
        abort(404)  # the same answer as for a page that does not exist
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiprocess_dir(current_app))
    registry.register(PortalCollector())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


def init_app(app):
    """/metrics and the counters' receivers (batch signals and this app's requests)."""
    _process_metrics(app)
    events.item_finished.connect(_on_item_finished)
    events.items_retried.connect(_on_items_retried)
    events.recovery_acted.connect(_on_recovery_acted)
    events.stuck_instances.connect(_on_stuck_instances)
    request_started.connect(_on_request_started, app)
    request_finished.connect(_on_request_finished, app)
    app.add_url_rule("/metrics", "metrics", metrics_view)
