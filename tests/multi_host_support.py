"""Several "hosts" on one Linux machine for the multi-host test.

A host is a network namespace joined to the root namespace by a veth pair
(10.231.N.2 inside, 10.231.N.1 on the root side), with its own host name (a UTS
namespace) and its own temporary directory for HOME, TMPDIR and the portal's
instance folder, so hosts share no disk the portal writes to. PostgreSQL and
Redis listen on 127.0.0.1 only: a forwarder process per host listens on the
host's root-side address and relays each connection to them, so what a host
reaches travels over its veth link, and ``ip link set <veth> down`` cuts it off.

Every name starts with ``portal-mh-`` (namespaces) or ``pmh`` (veths), so the
leftovers of an interrupted run are found and removed before a new one (one run
at a time per machine, then: a second one would remove the first one's hosts).

Run as a script, this module is the forwarder:
``python multi_host_support.py forward LISTEN_ADDRESS PORT=tcp:HOST:PORT PORT=unix:PATH ...``.
Its imports stay in the standard library for that reason; the portal is imported
inside the functions that need it.
"""
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE_PREFIX = "portal-mh-"
VETH_PREFIX = "pmh"
SUBNET = "10.231"
POSTGRES_PORT = 5432
REDIS_PORT = 6379

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Children get SIGKILL when the test process ends, however it ends: an
    interrupted run leaves no forwarder or worker behind on the machine."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


# --- can this machine run it? ---------------------------------------------------------------------

def environment_problem():
    """Why hosts cannot be made here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "hostname"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = NAMESPACE_PREFIX + "probe"
    _ip("netns", "del", probe, check=False)
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns` is unavailable: {made.stderr.strip() or made.returncode}"
    _ip("netns", "del", probe, check=False)
    return None


def cleanup_leftovers():
    """Remove the namespaces and veths an earlier run left (killing what still runs inside)."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ")[0]
        if name.startswith(NAMESPACE_PREFIX):
            _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        # "12: pmh1r@if11: <...>"
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(VETH_PREFIX):
            _ip("link", "del", name, check=False)


def _kill_namespace_processes(namespace):
    pids = _ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


# --- one host -------------------------------------------------------------------------------------

class Host:
    """One network namespace with its link, forwarder, directory and processes."""

    def __init__(self, index, database_url, redis_url, extra_env=None):
        self.index = index
        letter = "abcdefghij"[index - 1]
        self.name = "mh-" + letter                           # its host name, seen in attempt rows
        self.namespace = NAMESPACE_PREFIX + letter
        self.veth_root = f"{VETH_PREFIX}{index}r"
        self.veth_host = f"{VETH_PREFIX}{index}h"
        self.gateway = f"{SUBNET}.{index}.1"                # root side: where the forwarder listens
        self.address = f"{SUBNET}.{index}.2"                # inside the namespace
        self.database_url, self.redis_url = database_url, redis_url
        self.extra_env = dict(extra_env or {})
        self.dir = None
        self.forwarder = None
        self.procs = []   # (role, Popen)

    # network
    def create(self):
        self.dir = tempfile.mkdtemp(prefix=f"portal-{self.name}-")
        for sub in ("home", "tmp", "instance"):
            os.makedirs(os.path.join(self.dir, sub))
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_host)
        _ip("link", "set", self.veth_host, "netns", self.namespace)
        _ip("addr", "add", f"{self.gateway}/30", "dev", self.veth_root)
        _ip("link", "set", self.veth_root, "up")
        _ip("-n", self.namespace, "addr", "add", f"{self.address}/30", "dev", self.veth_host)
        _ip("-n", self.namespace, "link", "set", self.veth_host, "up")
        _ip("-n", self.namespace, "link", "set", "lo", "up")
        self.forwarder = Forwarder(self.gateway, {
            POSTGRES_PORT: _postgres_upstream(self.database_url),
            REDIS_PORT: _redis_upstream(self.redis_url)}, os.path.join(self.dir, "forwarder.log"))
        self.forwarder.start()
        return self

    def link_down(self):
        _ip("link", "set", self.veth_root, "down")

    def env(self):
        """The environment of the host's processes: its own directories, and the
        database and Redis reached over its link."""
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(
            HOME=os.path.join(self.dir, "home"), TMPDIR=os.path.join(self.dir, "tmp"),
            PORTAL_INSTANCE_PATH=os.path.join(self.dir, "instance"),
            DATABASE_URL=_database_url_via(self.database_url, self.gateway),
            REDIS_URL=_redis_url_via(self.redis_url, self.gateway),
            # libpq reads it: the host's sessions are told apart in pg_stat_activity.
            PGAPPNAME=self.name)
        return env

    # processes
    def _spawn(self, role, argv):
        log = open(os.path.join(self.dir, f"{role}-{len(self.procs)}.log"), "ab")
        # Inside the namespace, in a UTS namespace of its own whose host name is the host's.
        command = ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c",
                   'hostname "$0" && exec "$@"', self.name, *argv]
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
        log.close()
        self.procs.append((role, proc))
        return proc

    def start_worker(self, number):
        return self._spawn("worker", [sys.executable, "-m", "flask", "--app", "app", "worker",
                                      "--name", f"{self.name}-w{number}"])

    def start_scheduler(self):
        return self._spawn("scheduler", [sys.executable, "-m", "flask", "--app", "app",
                                         "scheduler"])

    def pids(self):
        """Every live process of the host (workers, work-horses, schedulers)."""
        if self.namespace not in _ip("netns", "list", check=False).stdout:
            return []
        return [int(pid) for pid in _ip("netns", "pids", self.namespace, check=False).stdout.split()]

    def kill(self):
        """SIGKILL every process of the host at once; returns how many there were."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _role, proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return len(pids)

    def alive(self):
        return [role for role, proc in self.procs if proc.poll() is None]

    def log_tail(self, lines=30):
        """The end of each of the host's logs, for a failure's message."""
        parts = []
        for name in sorted(os.listdir(self.dir)) if self.dir and os.path.isdir(self.dir) else []:
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), errors="replace") as fh:
                    tail = fh.readlines()[-lines:]
                parts.append(f"--- {self.name}/{name}\n" + "".join(tail))
        return "\n".join(parts)

    def destroy(self):
        """Kill the processes, stop the forwarder, delete the veth and the namespace, the directory."""
        try:
            if self.namespace in _ip("netns", "list", check=False).stdout:
                _kill_namespace_processes(self.namespace)
            for _role, proc in self.procs:
                if proc.poll() is None:
                    proc.kill()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.forwarder is not None:
                self.forwarder.stop()
            _ip("link", "del", self.veth_root, check=False)
            _ip("netns", "del", self.namespace, check=False)
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_upstream(database_url):
    from sqlalchemy.engine import make_url
    url = make_url(database_url)
    return ("tcp", url.host or "127.0.0.1", url.port or POSTGRES_PORT)


def _database_url_via(database_url, address):
    from sqlalchemy.engine import make_url
    return make_url(database_url).set(host=address, port=POSTGRES_PORT).render_as_string(
        hide_password=False)


def _redis_upstream(redis_url):
    from redis.connection import parse_url
    options = parse_url(redis_url)
    if options.get("path"):
        return ("unix", options["path"])
    return ("tcp", options.get("host") or "127.0.0.1", options.get("port") or REDIS_PORT)


def _redis_url_via(redis_url, address):
    from urllib.parse import quote
    from redis.connection import parse_url
    options = parse_url(redis_url)
    auth = ""
    if options.get("password"):
        auth = quote(options.get("username") or "") + ":" + quote(options["password"]) + "@"
    return f"redis://{auth}{address}:{REDIS_PORT}/{options.get('db', 0)}"


class Hosts:
    """``count`` hosts made together, and removed together whatever happened."""

    def __init__(self, count, database_url, redis_url, extra_env=None):
        self.hosts = [Host(index, database_url, redis_url, extra_env)
                      for index in range(1, count + 1)]

    def __iter__(self):
        return iter(self.hosts)

    def __getitem__(self, index):
        return self.hosts[index]

    def create(self):
        for host in self.hosts:
            host.create()
        return self

    def destroy(self):
        errors = []
        for host in self.hosts:
            try:
                host.destroy()
            except Exception as exc:  # go on: the other hosts must be removed too
                errors.append(exc)
        if errors:
            raise errors[0]


# --- the forwarder --------------------------------------------------------------------------------

class Forwarder:
    """A forwarder process listening on ``address``, relaying each port to its upstream."""

    def __init__(self, address, routes, log_path):
        self.address, self.routes, self.log_path = address, routes, log_path
        self.proc = None

    def start(self):
        specs = [f"{port}={':'.join(str(part) for part in upstream)}"
                 for port, upstream in self.routes.items()]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "forward", self.address, *specs],
            stdout=subprocess.PIPE, stderr=log, preexec_fn=_die_with_parent)
        log.close()
        # It says "ready" once it listens; a forwarder that failed closes its stdout instead.
        if self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            raise RuntimeError(f"forwarder on {self.address} did not start; see {self.log_path}")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
        self.proc = None


def serve_forwarder(address, specs):
    """Listen on ``address`` for each ``PORT=tcp:HOST:PORT`` / ``PORT=unix:PATH`` and relay.

    Each accepted connection gets a forked child of its own that relays both ways
    with blocking calls: the connections of six workers are relayed side by side,
    the way a network carries them, not one after the other in one process (an
    event loop here cost a third of the batch's rate on a busy machine).
    """
    listeners = {}
    for spec in specs:
        port, upstream = spec.split("=", 1)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, int(port)))
        listener.listen(128)
        listeners[listener.fileno()] = (listener, tuple(upstream.split(":", 2)))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children reap themselves
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    poller = select.poll()
    for fd in listeners:
        poller.register(fd, select.POLLIN)
    while True:
        for fd, _event in poller.poll():
            listener, upstream = listeners[fd]
            try:
                client, _peer = listener.accept()
            except OSError:
                continue
            if os.fork() == 0:
                try:
                    _die_with_parent()   # stopping the forwarder drops every connection
                    for other, _upstream in listeners.values():
                        other.close()
                    _relay(client, upstream)
                finally:
                    os._exit(0)
            client.close()


def _relay(client, upstream_spec):
    """Connect upstream and copy bytes both ways until either side closes."""
    if upstream_spec[0] == "unix":
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = upstream_spec[1]
    else:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        target = (upstream_spec[1], int(upstream_spec[2]))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        upstream.connect(target)
    except OSError as exc:
        print(f"upstream {upstream_spec}: {exc}", file=sys.stderr, flush=True)
        return
    peers = {client.fileno(): (client, upstream), upstream.fileno(): (upstream, client)}
    poller = select.poll()
    for fd in peers:
        poller.register(fd, select.POLLIN)
    while True:
        for fd, _event in poller.poll():
            source, target_socket = peers[fd]
            try:
                data = source.recv(65536)
                if not data:
                    return
                # PostgreSQL and Redis answer requests: neither side floods the other
                # while it is not read, so a blocking send cannot deadlock here.
                target_socket.sendall(data)
            except OSError:
                return


# --- reading the batch from the root namespace ------------------------------------------------------

def read(sql, **params):
    """Rows of one autocommit read, outside the test's ORM session."""
    from sqlalchemy import text
    from portal.infra.extensions import db
    with db.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def counters(batch_id):
    (row,) = read("SELECT status, total, pending, running, success, failed, ignored "
                  "FROM batch WHERE id = :batch", batch=batch_id)
    return row._mapping


def running_items(batch_id):
    return {row[0] for row in read(
        "SELECT id FROM batch_item WHERE batch_id = :batch AND status = 'running'", batch=batch_id)}


def items_state(item_ids):
    """{item id: (status, retry_count)}."""
    if not item_ids:
        return {}
    return {row[0]: (row[1], row[2]) for row in read(
        "SELECT id, status, retry_count FROM batch_item WHERE id = ANY(:ids)", ids=sorted(item_ids))}


def in_transaction(application_name):
    """Whether a session of that host is inside a transaction right now (mid-item, most likely)."""
    return bool(read(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = :name AND xact_start IS NOT NULL AND state <> 'idle'",
        name=application_name))


def attempts_by_host(batch_id, after=None):
    """{host name: item runs}; recovery's own rows are under ``recovery@HOST``."""
    clause = " AND finished_at > :after" if after is not None else ""
    return {row[0]: row[1] for row in read(
        "SELECT split_part(worker, ':', 1), count(*) FROM batch_item_attempt "
        "WHERE batch_id = :batch" + clause + " GROUP BY 1", batch=batch_id, after=after)}


def exactly_once_report(batch_id):
    """What the end state must show, in numbers: items by status, tasks of the batch not done,
    tasks whose approve history rows are not exactly one, and the history rows the batch wrote."""
    by_status = dict(read("SELECT status, count(*) FROM batch_item WHERE batch_id = :batch "
                          "GROUP BY status", batch=batch_id))
    (not_done,) = read(
        "SELECT count(*) FROM batch_item i JOIN task t ON t.id = i.task_id "
        "WHERE i.batch_id = :batch AND t.status <> 'done'", batch=batch_id)[0]
    (not_once,) = read(
        "SELECT count(*) FROM (SELECT i.task_id, (SELECT count(*) FROM history h "
        "  WHERE h.task_id = i.task_id AND h.action = 'approve') AS approvals "
        "  FROM batch_item i WHERE i.batch_id = :batch) per_task WHERE approvals <> 1",
        batch=batch_id)[0]
    (approvals,) = read(
        "SELECT count(*) FROM history h JOIN batch_item i ON i.task_id = h.task_id "
        "WHERE i.batch_id = :batch AND h.action = 'approve'", batch=batch_id)[0]
    return {"items": by_status, "tasks not done": not_done,
            "tasks not approved exactly once": not_once, "approve rows": approvals}


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "forward":
        serve_forwarder(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: multi_host_support.py forward LISTEN_ADDRESS PORT=tcp:HOST:PORT ...")
