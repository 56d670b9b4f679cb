"""How many users one deployment holds while a big batch runs: a Locust scenario against gunicorn.

    REDIS_URL=redis://127.0.0.1:6379/N .venv/bin/python bench/load_test.py [--db postgres|sqlite]
        [--items 20000] [--users 10,25,50] [--step-seconds 60] [--alone-seconds 30]
        [--warmup-seconds 15] [--workers 2] [--web-workers 2] [--json PATH]

One deployment on this machine, as docs/deployment.md runs it: gunicorn (``--workers 2 --threads 4
--worker-class gthread``, the settings of deploy/portal-web.service), RQ workers (``flask --app app
worker``) and the scheduler (``flask --app app scheduler``), on a fresh database (PostgreSQL: a new
``portal_bench_<random>`` database on ``BENCH_PG``'s server, dropped at exit; the Redis database in
``REDIS_URL`` is emptied first and last, an embedded one is started when it is unset).

It seeds one account per simulated user with pending tasks of its own (``--tasks-per-user`` for
single approvals and as many for small batches), starts the processes, then:

1. warms the web workers up with a few users (``--warmup-seconds``, not counted);
2. runs a big batch of ``--items`` tasks (created by another account) alone for ``--alone-seconds``
   and measures its rate (items/s);
3. for each step of ``--users``, starts a big batch and runs ``locust --headless -f
   bench/locustfile.py`` as a child process for a ramp (``--spawn-rate``) plus ``--step-seconds`` with
   that many users, reads its stats CSV and measures the big batch's rate from the moment every user
   has started until Locust stops;
4. measures the big batch alone again: the ratios are to the mean of the two alone rates.

Each phase's big batch is cancelled when the phase ends and the next one starts with ``--items``
items again (see ``BigBatches``), so no phase runs out of work.

Per step it prints requests/s, the median, 95th percentile and slowest time of each page kind,
failures, and the batch's rate; the summary adds each step's ratio to the rate alone and, last, the
most users for which every page kind's p95 stayed under 300 ms with no failure. Locust's figures cover
the whole step, its ramp included. The load generator runs on the same 2 cores as everything else
(the script prints how much of a core it used).

Login rate limits are raised for the web processes (every simulated user comes from 127.0.0.1) and
accounts use the benchmarks' fast password hash (``bench_app``). Every process started here, and
what they fork (RQ work-horses, gunicorn workers), is killed at exit whatever happens.
"""
import argparse
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.setup import ROOT, WorkerPool, bench_app, bulk_tasks, review_task  # noqa: E402

LOCUSTFILE = os.path.join(ROOT, "bench", "locustfile.py")
USER_PREFIX = "load"
PASSWORD = "load-pass-123"
BATCH_OWNER = "bigbatch"
P95_LIMIT_MS = 300
# Kinds of Locust's statistics that are not pages (times in seconds, not held to the 300 ms).
NOT_PAGES = {"small batch done", "no task left"}
# What the simulated users type into the form (bench/locustfile.py FORM), and the big batch's decision.
FORM = {"amount": 10, "category": "Travel"}
# Each instance's task goes to the user its ``approver`` variable names: one process for every account.
LOAD_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
    id="Definitions_load" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="load_claim" name="Load test: claim" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="to_review" sourceRef="start" targetRef="review"/>
""" + review_task("${approver}") + """    <bpmn:sequenceFlow id="done" sourceRef="review" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""
# The warm-up's users: enough for both gunicorn workers to render every page once before the
# measurements (a worker's first page of a kind compiles its templates).
WARMUP_USERS = 4
# Every simulated user comes from 127.0.0.1 and logs in once per step.
RAISED_LOGIN_LIMITS = {"LOGIN_RATE_LIMIT": "100000 per minute",
                       "LOGIN_ACCOUNT_RATE_LIMIT": "100000 per minute"}


# --- processes -------------------------------------------------------------------------------------

def _die_with_parent():
    """A child gets SIGKILL when this process ends, however it ends (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _children_by_parent():
    """{pid: [child pids]} of every process on the machine, from /proc."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                # "pid (command) state ppid ...": the command may hold spaces and parentheses.
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(name))
    return children


def descendants(pids):
    """``pids`` and every process below them."""
    children = _children_by_parent()
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


class Children:
    """The processes this run starts, stopped together with whatever they forked.

    RQ work-horses run in process groups of their own, so killing a worker's group would leave its
    horse running: ``stop`` freezes the started processes (no new fork meanwhile), reads the whole
    tree below them and kills every process in it.
    """

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.workdir, name + ".log"), "ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent)
        log.close()
        self.procs.append(proc)
        return proc

    def adopt(self, procs):
        self.procs.extend(procs)

    def count_lines(self, name, text):
        """How many lines of a process's log hold ``text``."""
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as fh:
                return sum(text in line for line in fh)
        except OSError:
            return 0

    def log_tail(self, name, lines=20):
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        live = [proc for proc in self.procs if proc.poll() is None]
        for proc in live:
            try:
                os.kill(proc.pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        for pid in descendants(proc.pid for proc in live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            proc.wait()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_web(url, proc, children, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + children.log_tail("gunicorn"))
        try:
            with urllib.request.urlopen(url + "/login", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError("gunicorn did not answer:\n" + children.log_tail("gunicorn"))


# --- the data --------------------------------------------------------------------------------------

def account_names(count):
    return [f"{USER_PREFIX}{number:03d}" for number in range(1, count + 1)]


def seed(accounts, tasks_per_user):
    """The load process, the accounts and their tasks; returns ``BigBatches`` for the owner's batches."""
    from portal.accounts import create_user
    from portal.infra.extensions import db
    from portal.models import Node
    from portal.workflow.process_files import load_bpmn_definition
    owner = create_user(BATCH_OWNER, PASSWORD)
    names = account_names(accounts)
    for name in names:
        create_user(name, PASSWORD)
    process, _created = load_bpmn_definition(LOAD_BPMN.encode("utf-8"))
    db.session.commit()
    node = db.session.execute(db.select(Node).where(
        Node.process_id == process.id, Node.key == "review")).scalar_one()
    for name in names:
        # The locustfile picks single approvals by "Single" and batch tasks by "Batch" in the title.
        bulk_tasks(node, tasks_per_user, f"Single {name}", variables={"approver": name})
        bulk_tasks(node, tasks_per_user, f"Batch {name}", variables={"approver": name})
    return BigBatches(node.id, owner.id)


class BigBatches:
    """The big batch of each phase (alone, each step of users), created by its own account.

    Every phase starts a batch of ``items`` tasks and cancels it at its end: its tasks not run yet go
    back to pending and into the next phase's batch, topped up with new ones. So each phase runs with a
    batch of that size from its start, however many items the phases before it ran.
    """

    def __init__(self, node_id, owner_id):
        self.node_id, self.owner_id = node_id, owner_id

    def _free_tasks(self, count):
        from portal.infra.extensions import db
        from portal.models import Task
        return list(db.session.execute(
            db.select(Task.id).where(Task.assignee_user_id == self.owner_id, Task.status == "pending",
                                     Task.lock_batch_id.is_(None)).order_by(Task.id).limit(count)).scalars())

    def start(self, items):
        """Create and start a batch of ``items`` tasks; returns its id."""
        from portal.batches import creation, dispatch
        from portal.infra.extensions import db
        from portal.models import Node, User
        node, owner = db.session.get(Node, self.node_id), db.session.get(User, self.owner_id)
        task_ids = self._free_tasks(items)
        if len(task_ids) < items:
            bulk_tasks(node, items - len(task_ids), "Big", variables={"approver": BATCH_OWNER})
            task_ids = self._free_tasks(items)
        batch = creation.create_batch(owner, node, task_ids=task_ids, action="approve",
                                      comment="load test: the big batch", form=FORM)
        db.session.commit()
        dispatch.start(batch)
        batch_id = batch.id
        db.session.remove()
        return batch_id

    def stop(self, batch_id, timeout=60):
        """Cancel the batch and wait for its running items to end; returns its failed items."""
        from portal.batches import control
        from portal.infra.extensions import db
        from portal.models import Batch, User
        from portal.models.batches import OPEN_BATCH_STATUSES
        batch = db.session.get(Batch, batch_id)
        if batch.status in OPEN_BATCH_STATUSES:
            control.cancel(batch, db.session.get(User, self.owner_id))
            db.session.commit()
        deadline = time.monotonic() + timeout
        while True:
            db.session.expire_all()
            batch = db.session.get(Batch, batch_id)
            running, failed = batch.running, batch.failed
            db.session.remove()
            if running == 0 or time.monotonic() > deadline:
                return failed
            time.sleep(0.2)


class BatchWatch:
    """Samples of the big batch's committed successes, read outside any ORM session."""

    def __init__(self, batch_id):
        self.batch_id = batch_id
        self.samples = []   # (time.time(), success, finished)

    def sample(self):
        from sqlalchemy import text
        from portal.infra.extensions import db
        with db.engine.connect() as conn:
            row = conn.execute(text("SELECT success, failed, pending, running FROM batch "
                                    "WHERE id = :id"), {"id": self.batch_id}).one()
        self.samples.append((time.time(), row.success, row.pending + row.running == 0))
        return row

    def sample_for(self, seconds, every=0.5):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(every)
        self.sample()

    def _success_at(self, moment):
        before = [s for s in self.samples if s[0] <= moment]
        after = [s for s in self.samples if s[0] >= moment]
        if not before:
            return after[0][1]
        if not after:
            return before[-1][1]
        (t0, s0, _f0), (t1, s1, _f1) = before[-1], after[0]
        return s0 if t1 == t0 else s0 + (s1 - s0) * (moment - t0) / (t1 - t0)

    def rate(self, start, end):
        """(items/s between two moments, whether the batch finished before ``end``).

        A batch that finished in between is timed up to its first sample with nothing left.
        """
        finished_at = next((t for t, _s, finished in self.samples if finished and t > start), None)
        finished = finished_at is not None and finished_at < end
        if finished:
            end = finished_at
        if end <= start:
            return None, finished
        return (self._success_at(end) - self._success_at(start)) / (end - start), finished


# --- one step of users -----------------------------------------------------------------------------

def read_stats(prefix):
    """{name: {requests, failures, p50, p95, max, rps}} and the Aggregated row, from Locust's CSV."""
    kinds, total = {}, None
    with open(prefix + "_stats.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            figures = {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                       "p50": _number(row["50%"]), "p95": _number(row["95%"]),
                       "max": _number(row["Max Response Time"]), "rps": float(row["Requests/s"])}
            if row["Name"] == "Aggregated":
                total = figures
            else:
                kinds[row["Name"]] = figures
    return kinds, total


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):   # "N/A" for a kind without requests
        return None


def read_failures(prefix, log_path):
    """[(kind, error, count)]: the failed requests, and the errors Locust logged.

    An exception in the locustfile's code is no failed request: Locust logs it and goes on (or, in
    ``on_start``, drops that user), so a bug there would otherwise pass unseen.
    """
    failures = []
    try:
        with open(prefix + "_failures.csv", newline="") as fh:
            failures += [(row["Name"], row["Error"], int(row["Occurrences"])) for row in csv.DictReader(fh)]
    except OSError:
        pass
    with open(log_path, errors="replace") as fh:
        failures += [("locustfile", line.strip(), 1) for line in fh
                     if "/ERROR/" in line or "/CRITICAL/" in line]
    return failures


def full_window(prefix, users):
    """(first moment with every user started, last moment of the run), from the stats history."""
    started = last = None
    with open(prefix + "_stats_history.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] != "Aggregated":
                continue
            moment = float(row["Timestamp"])
            last = moment
            if started is None and int(row["User Count"]) >= users:
                started = moment
    return started, last


def held(step):
    """Every page kind's p95 under the limit, and no failure of any kind."""
    pages = {name: kind for name, kind in step["kinds"].items() if name not in NOT_PAGES}
    return (bool(pages) and step["failures"] == 0
            and all(kind["p95"] is not None and kind["p95"] < P95_LIMIT_MS for kind in pages.values()))


def _reaped_cpu_seconds():
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_step(users, seconds, args, host, children, watch, name=None):
    """``users`` Locust users for a ramp plus ``seconds``; the step's figures (see print_step).

    ``watch`` (a BatchWatch, or None for the warm-up) samples the big batch meanwhile.
    """
    spawn_rate = args.spawn_rate or max(1.0, users / 5)
    ramp = math.ceil(users / spawn_rate)
    name = name or f"locust-{users}"
    prefix = os.path.join(children.workdir, name)
    env = dict(os.environ, LOAD_USER_PREFIX=USER_PREFIX, LOAD_PASSWORD=PASSWORD,
               LOAD_ACCOUNTS=str(max(args.users)), LOAD_BATCH_SIZE=str(args.batch_size))
    argv = [sys.executable, "-m", "locust", "--headless", "-f", LOCUSTFILE, "--host", host,
            "--users", str(users), "--spawn-rate", str(spawn_rate),
            "--run-time", f"{ramp + seconds}s", "--csv", prefix, "--only-summary",
            "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    booted = children.count_lines("gunicorn", "Booting worker")
    # Locust is the only child that ends (and is reaped) during a step: the growth of the reaped
    # children's CPU time is its own.
    cpu_before, started = _reaped_cpu_seconds(), time.monotonic()
    proc = children.start(name, argv, env)
    deadline = time.monotonic() + ramp + seconds + 60
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"locust did not stop:\n{children.log_tail(name)}")
        if watch:
            watch.sample()
        time.sleep(1)
    if watch:
        watch.sample()
    locust_cores = (_reaped_cpu_seconds() - cpu_before) / (time.monotonic() - started)
    if proc.returncode != 0 or not os.path.exists(prefix + "_stats.csv"):
        raise RuntimeError(f"locust exited with {proc.returncode}:\n{children.log_tail(name)}")
    kinds, total = read_stats(prefix)
    failures = read_failures(prefix, os.path.join(children.workdir, name + ".log"))
    start, end = full_window(prefix, users)
    rate, finished = watch.rate(start, end) if watch and start is not None else (None, False)
    log = children.log_tail(name, 200)
    return {"users": users, "kinds": kinds, "rps": total["rps"] if total else 0.0,
            "requests": total["requests"] if total else 0,
            # Failed requests, plus the errors Locust logged (not requests: counted apart).
            "failures": (total["failures"] if total else 0)
            + sum(count for kind, _error, count in failures if kind == "locustfile"),
            "failure_messages": failures, "batch_rate": rate,
            "batch_finished": finished, "seconds": (end - start) if start is not None else None,
            "locust_cpu_warning": "CPU usage" in log, "locust_cores": locust_cores, "load": _load(),
            # gunicorn replaces a worker after --max-requests: the new one starts cold.
            "web_worker_restarts": children.count_lines("gunicorn", "Booting worker") - booted}


def print_step(step):
    batch = ("the big batch finished before every user had started" if step["batch_rate"] is None
             else f"the big batch {step['batch_rate']:.1f} items/s"
             + (" (it finished during the step: use more --items)" if step["batch_finished"] else ""))
    print(f"\n{step['users']} users: {step['rps']:.1f} requests/s, {step['requests']} requests, "
          f"{step['failures']} failures; {batch}")
    print(f"  {'page kind':<22} {'requests':>8} {'fails':>6} {'p50':>7} {'p95':>7} {'max':>7}  (ms)")
    for name, kind in sorted(step["kinds"].items()):
        figures = " ".join(f"{kind[key]:7.0f}" if kind[key] is not None else f"{'-':>7}"
                           for key in ("p50", "p95", "max"))
        print(f"  {name:<22} {kind['requests']:>8} {kind['failures']:>6} {figures}")
    for name, error, count in step["failure_messages"]:
        print(f"  failed {count} x {name}: {error}")
    if step["web_worker_restarts"]:
        print(f"  gunicorn replaced {step['web_worker_restarts']} worker(s) during the step (--max-requests)")
    if step["locust_cpu_warning"]:
        print("  (Locust warned that its CPU use was too high: the load generator limited the step)")
    print(f"  held: {'yes' if held(step) else 'no'}; Locust itself used {step['locust_cores']:.2f} of a core;"
          f" load average at the end of the step {step['load']}")


# --- the run ---------------------------------------------------------------------------------------

def _parse_users(text):
    steps = [int(part) for part in text.split(",") if part.strip()]
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of user counts, e.g. 10,25,50")
    return steps


def _raise_on_term():
    """SIGTERM and SIGHUP end the run like Ctrl-C: the finally blocks and atexit clean up."""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)


def _queue_state(redis):
    """What RQ holds, for a run that stalls: queued jobs and each worker's state."""
    from rq import Worker
    from portal.infra.queueing import get_queue
    workers = [f"{worker.name}: {worker.get_state()}" for worker in Worker.all(connection=redis)]
    return f"queued jobs: {get_queue().count}; workers: {', '.join(workers) or 'none'}"


def _load():
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def wait_for_first_items(watch, redis, timeout=60):
    """Until the batch's first items are done: its lanes run and their work-horses are warm."""
    deadline = time.monotonic() + timeout
    while watch.sample().success == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the big batch did not start within {timeout} s; {_queue_state(redis)}")
        time.sleep(0.2)
    watch.samples.clear()


def measure_alone(big, args, redis):
    """A fresh big batch's rate with no users, over ``--alone-seconds``; (items/s, failed items)."""
    batch_id = big.start(args.items)
    watch = BatchWatch(batch_id)
    wait_for_first_items(watch, redis)
    start = time.time()
    watch.sample_for(args.alone_seconds)
    rate, _finished = watch.rate(start, time.time())
    failed = big.stop(batch_id)
    if rate is None:
        raise RuntimeError("the big batch ended before it was measured alone: use more --items")
    return rate, failed


def start_deployment(args, workers, children, redis):
    """gunicorn as deploy/portal-web.service runs it, the RQ workers and the scheduler; the web's URL."""
    port = _free_port()
    host = f"http://127.0.0.1:{port}"
    web = children.start("gunicorn", [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.web_workers), "--threads", str(args.threads),
        "--worker-class", "gthread", "--timeout", "120", "--graceful-timeout", "30",
        "--max-requests", "2000", "--max-requests-jitter", "200",
        "--access-logfile", "-", "app:app"])
    pool = WorkerPool(workers)
    children.adopt(pool.procs)
    children.start("scheduler", [sys.executable, "-m", "flask", "--app", "app", "scheduler"])
    pool.wait_ready(redis)
    _wait_for_web(host, web, children)
    return host, web


def print_summary(result):
    alone = result["alone_rate"]
    print(f"\nthe big batch alone: {result['alone_before']:.1f} items/s before the steps, "
          f"{result['alone_after']:.1f} after; ratios to their mean, {alone:.1f} items/s. "
          f"Failed items of the big batches: {result['big_batch_failed']}. Load average at the end {_load()}")
    print(f"{'users':>5} {'req/s':>7} {'fails':>6} {'worst p95 (ms)':>15} {'batch items/s':>14} "
          f"{'x alone':>8}  held")
    for step in result["steps"]:
        worst = max((kind["p95"] or 0 for name, kind in step["kinds"].items() if name not in NOT_PAGES),
                    default=0)
        rate = f"{step['batch_rate']:14.1f}" if step["batch_rate"] is not None else f"{'-':>14}"
        ratio = f"{step['ratio']:8.2f}" if step["ratio"] is not None else f"{'-':>8}"
        print(f"{step['users']:>5} {step['rps']:>7.1f} {step['failures']:>6} {worst:>15.0f} {rate} {ratio}"
              f"  {'yes' if held(step) else 'no'}")
    if result["held"] is None:
        print(f"held: none of the steps (page p95 under {P95_LIMIT_MS} ms for every page kind and "
              "no failures)")
        return
    best = next(step for step in result["steps"] if step["users"] == result["held"] and held(step))
    batch = ("" if best["ratio"] is None else
             f"; the big batch meanwhile {best['batch_rate']:.1f} items/s = {best['ratio']:.2f} x alone")
    print(f"held: {result['held']} users with page p95 under {P95_LIMIT_MS} ms for every page kind and "
          f"no failures{batch}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--items", type=int, default=20000, help="items of each phase's big batch")
    parser.add_argument("--users", type=_parse_users, default=[10, 25, 50],
                        help="simulated users of each step, e.g. 10,25,50")
    parser.add_argument("--step-seconds", type=int, default=60, help="each step, after its ramp")
    parser.add_argument("--alone-seconds", type=int, default=30,
                        help="the big batch alone, before the steps and again after them")
    parser.add_argument("--warmup-seconds", type=int, default=15,
                        help="a few users before anything is measured (0: none)")
    parser.add_argument("--spawn-rate", type=float, default=None,
                        help="users started per second (default: a step's users in 5 s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="RQ worker processes (default: 2 on PostgreSQL, 1 on SQLite)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--tasks-per-user", type=int, default=100,
                        help="pending tasks of each account for single approvals (as many for batches)")
    parser.add_argument("--batch-size", type=int, default=3, help="tasks of a user's small batch")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this file")
    args = parser.parse_args()
    if args.alone_seconds < 1:
        parser.error("--alone-seconds: the ratios need the batch's rate alone")
    _raise_on_term()
    workers = args.workers if args.workers is not None else (2 if args.db == "postgres" else 1)

    app = bench_app(args.db)   # a fresh database, dropped at exit (atexit)
    os.environ.update(RAISED_LOGIN_LIMITS)
    workdir = os.path.dirname(os.environ["PORTAL_INSTANCE_PATH"])
    result = {"database": args.db, "marker": os.environ["DATABASE_URL"], "items": args.items,
              "workers": workers, "web_workers": args.web_workers, "steps": []}
    children = Children(workdir)
    with app.app_context():
        from portal.infra.extensions import db
        from portal.infra.queueing import get_redis
        redis = get_redis()
        redis.flushdb()
        try:
            print(f"database: {db.engine.dialect.name}; big batches of {args.items} items; RQ workers: "
                  f"{workers}; gunicorn {args.web_workers} x {args.threads} threads; "
                  f"{os.cpu_count()} cores, load average {_load()}")
            started = time.monotonic()
            big = seed(max(args.users), args.tasks_per_user)
            db.session.remove()
            print(f"seeded {max(args.users)} accounts with {2 * args.tasks_per_user} tasks each in "
                  f"{time.monotonic() - started:.1f} s")
            host, web = start_deployment(args, workers, children, redis)

            if args.warmup_seconds:
                warm_users = min(WARMUP_USERS, max(args.users))
                warm = run_step(warm_users, args.warmup_seconds, args, host, children, None, "warmup")
                print(f"warm-up, not counted: {warm_users} users for {args.warmup_seconds} s, "
                      f"{warm['requests']} requests, {warm['failures']} failures")
                for name, error, count in warm["failure_messages"]:
                    print(f"  failed {count} x {name}: {error}")

            result["alone_before"], failed = measure_alone(big, args, redis)
            failed_items = failed
            print(f"the big batch alone: {result['alone_before']:.1f} items/s over {args.alone_seconds} s")
            for users in args.users:
                batch_id = big.start(args.items)
                watch = BatchWatch(batch_id)
                wait_for_first_items(watch, redis)
                step = run_step(users, args.step_seconds, args, host, children, watch)
                failed_items += big.stop(batch_id)
                print_step(step)
                result["steps"].append(step)
                if web.poll() is not None:
                    raise RuntimeError("gunicorn exited:\n" + children.log_tail("gunicorn"))
            result["alone_after"], failed = measure_alone(big, args, redis)
            failed_items += failed
            result["big_batch_failed"] = failed_items
            if any(step["failures"] for step in result["steps"]):
                print("\ngunicorn's log, last lines:\n" + children.log_tail("gunicorn"))
        finally:
            children.stop()
            try:
                redis.flushdb()
            except Exception as exc:   # the cleanup of processes and database goes on
                print(f"could not empty the Redis database: {exc}", file=sys.stderr)

    result["alone_rate"] = alone = (result["alone_before"] + result["alone_after"]) / 2
    for step in result["steps"]:
        step["ratio"] = step["batch_rate"] / alone if step["batch_rate"] is not None and alone else None
    result["held"] = max((step["users"] for step in result["steps"] if held(step)), default=None)
    print_summary(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
