"""Batches on the engine: this checkout's batch rate against the release before SpiffWorkflow, side by side.

    .venv/bin/python bench/bench_engine.py [--db sqlite|postgres] [--items 1000] [--runs 3]
                                           [--compare-with 829c58f] [--current REV]

Extracts ``--compare-with`` (default 829c58f, the last commit before processes ran on SpiffWorkflow) into a
temporary folder with ``git archive`` (the repository itself is left as it is), then measures the same thing on
both code bases, in turns: a fresh database, the JSON demo process (expense claim), ``--items`` pending tasks
at its first node, the floor (a bare loop over ``decide``, one transaction per task) and one batch run by
``--workers`` real RQ worker processes, timed from its first claim to its finish. Each measurement is a child
process whose working folder is that code base (its own ``bench/`` helpers, its own migrations, its own
workers) and which uses this same Python. Runs alternate which side goes first, so that the machine's drift
falls on both; the figures are the medians of ``--runs`` runs per side and their ratio (this checkout /
the previous release), and the same for each side's fastest run (on a shared machine, the one least slowed
by other work). The current side is this working folder as it is (uncommitted changes included),
or with ``--current REV`` that revision, extracted likewise, measured with this folder's ``bench/`` scripts
(the engine's own commit, f64442d, needs them: its ``bench/setup.py`` inserts tasks without engine state).

``--db postgres`` creates a fresh database per measurement on the server of ``BENCH_PG`` (else of
``DATABASE_URL``, else the local ``test`` server) and drops it at the end; ``REDIS_URL`` names the Redis
database the workers use, which is emptied before each measurement (so that no queued lane of the previous
run, whose batch ids the fresh database repeats, joins the next): give it a database of its own. Without
``REDIS_URL`` each measurement starts an embedded Redis. ``--db sqlite`` always uses a SQLite file and an
embedded Redis.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PREVIOUS = "829c58f"


def child(args):
    """One measurement on the code base in the working folder; prints its figures as a JSON line."""
    code_base = os.getcwd()
    sys.path[0] = code_base  # that code base's portal and bench, not those next to this file
    from bench import bench_batches
    from bench.setup import bench_app
    app = bench_app(args.db)
    with app.app_context():
        from portal.accounts import create_user
        from portal.demo import EXPENSE
        try:
            from portal.infra.extensions import db
            from portal.infra.queueing import get_redis
        except ImportError:  # a code base from before portal/infra/
            from portal.extensions import db
            from portal.queueing import get_redis
        from portal.models import Node
        try:
            from portal.workflow.process_files import load_definition
        except ImportError:  # a code base from before the workflow's packages (loading/, engine/, ...)
            from portal.workflow.definitions import load_definition
        user = create_user("alice", "password-123")
        load_definition(EXPENSE)
        db.session.commit()
        node = db.session.execute(db.select(Node).where(Node.key == "manager")).scalar_one()
        # positional arguments only: the previous release's functions take (user, node, items[, redis, workers])
        floor_rate = None if args.skip_floor else bench_batches.floor(user, node, args.items)
        batch_rate = bench_batches.batch_engine(user, node, args.items, get_redis(), args.workers)
        print(json.dumps({"floor": floor_rate, "batch": batch_rate, "database": db.engine.dialect.name}))


def extract(revision):
    """(commit, folder): ``revision``'s files in a new temporary folder."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    folder = tempfile.mkdtemp(prefix="portal-revision-")
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", folder], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return commit, folder


def child_environment(db_kind):
    env = dict(os.environ)
    if db_kind == "sqlite":
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
    else:
        url = env.get("DATABASE_URL", "")
        if "BENCH_PG" not in env and url.startswith("postgresql"):
            env["BENCH_PG"] = url  # bench_app creates its own database on this server
        env.pop("DATABASE_URL", None)
    return env


def empty_redis(env):
    if env.get("REDIS_URL"):
        import redis
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def measure(code_base, args, env):
    empty_redis(env)
    command = [sys.executable, os.path.abspath(__file__), "--child", "--db", args.db, "--items", str(args.items),
               "--workers", str(args.workers)] + (["--skip-floor"] if args.skip_floor else [])
    result = subprocess.run(command, cwd=code_base, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the measurement in {code_base} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _load():
    # The machine may be shared: the load says how much of it the measurements had.
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _rate(value):
    return "      -" if value is None else f"{value:7.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--items", type=int, default=1000, help="tasks per floor and per batch")
    parser.add_argument("--runs", type=int, default=3, help="measurements per side, in turns")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the batch")
    parser.add_argument("--compare-with", default=DEFAULT_PREVIOUS, metavar="REV",
                        help="the revision to measure next to this checkout")
    parser.add_argument("--current", metavar="REV",
                        help="measure this revision as the current side (default: this working folder as it is)")
    parser.add_argument("--skip-floor", action="store_true", help="measure the batch only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    commit, previous = extract(args.compare_with)
    extracted = [previous]
    env = child_environment(args.db)
    figures = {"previous": [], "current": []}
    try:
        if args.current:
            current_commit, current = extract(args.current)
            extracted.append(current)
            for name in os.listdir(os.path.join(ROOT, "bench")):
                if name.endswith(".py"):
                    shutil.copy2(os.path.join(ROOT, "bench", name), os.path.join(current, "bench", name))
            current_name = f"{args.current} ({current_commit[:12]}, extracted to {current})"
        else:
            current, current_name = ROOT, f"{ROOT} as it is"
        sides = {"previous": previous, "current": current}
        print(f"database: {args.db}, items: {args.items}, workers: {args.workers}, runs per side: {args.runs},"
              f" {os.cpu_count()} cores, load average {_load()}")
        print(f"previous = {args.compare_with} ({commit[:12]}, extracted to {previous}); current = {current_name}")
        print(f"{'run':>4} {'side':9} {'floor items/s':>14} {'batch items/s':>14} {'batch / floor':>14}")
        for run in range(1, args.runs + 1):
            order = ("previous", "current") if run % 2 else ("current", "previous")
            for side in order:
                result = measure(sides[side], args, env)
                figures[side].append(result)
                ratio = "" if result["floor"] is None else f"{result['batch'] / result['floor']:14.2f}"
                print(f"{run:4} {side:9} {_rate(result['floor']):>14} {_rate(result['batch']):>14} {ratio}",
                      flush=True)
    finally:
        for folder in extracted:
            shutil.rmtree(folder, ignore_errors=True)
        empty_redis(env)  # the workers' registrations and finished jobs of the last measurement

    for key in ("batch", "floor"):
        if figures["current"][0][key] is None:
            continue
        before = [result[key] for result in figures["previous"]]
        now = [result[key] for result in figures["current"]]
        pairs = ", ".join(f"{c / p:.2f}" for p, c in zip(before, now))
        print(f"{key}: median previous {statistics.median(before):7.1f}, current {statistics.median(now):7.1f}"
              f" items/s: current / previous = {statistics.median(now) / statistics.median(before):.2f}"
              f" (per run {pairs})")
        # On a shared machine the fastest run of each side is the one least slowed by others.
        print(f"{key}: best   previous {max(before):7.1f}, current {max(now):7.1f}"
              f" items/s: current / previous = {max(now) / max(before):.2f}")
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
