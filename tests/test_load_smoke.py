"""The load scenario (``bench/load_test.py``) end to end with a few users: a smoke test.

It runs the orchestrator as the benchmark is run: a fresh PostgreSQL database, gunicorn, two RQ
workers, the scheduler and big batches of a few thousand items (enough to keep running through a
phase), alone for a few seconds before and after 3 Locust users spend 20 s on the pages (login form,
My tasks, a task's decision form, the batch form, batch pages and their progress polling). It checks
what the figures rest on: every page kind was requested and none failed (a 4xx/5xx, a form sent back,
a conflict, a small batch that failed or never finished, an error in the locustfile), the big batch
ran alone and during the step, and nothing the run started is left: no process carries its database
in its environment, and the database is gone.

PostgreSQL and Redis only: the scenario is a production deployment's (SQLite is the development mode).
"""
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS = 3
# Every request name bench/locustfile.py uses; "small batch done" is a user's wait for a small batch.
PAGE_KINDS = {"login page", "log in", "My tasks", "My tasks, one node", "task page", "approve",
              "batch form", "start batch", "batch page", "progress", "batches list",
              "small batch done"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgresql"),
                       reason="the load scenario runs on PostgreSQL (DATABASE_URL is not one)"),
    pytest.mark.skipif(not (os.environ.get("REDIS_URL") or "").startswith("redis://"),
                       reason="the load scenario runs on a Redis server (REDIS_URL is not one)"),
]


def _processes_with(marker):
    """Pids of live processes whose environment holds ``marker`` (the run's DATABASE_URL)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{name}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:   # gone meanwhile, or not ours to read
            continue
        if state != "Z" and b"DATABASE_URL=" + marker.encode() in environ.split(b"\0"):
            found.append(int(name))
    return found


def _database_exists(url):
    target = make_url(url)
    admin = create_engine(make_url(os.environ["DATABASE_URL"]), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                {"name": target.database}).first() is not None
    finally:
        admin.dispose()


def test_the_load_scenario_runs_with_a_few_users(tmp_path):
    figures = tmp_path / "load.json"
    # bench_app creates its database on the server of BENCH_PG: the suite's own.
    env = dict(os.environ, BENCH_PG=os.environ["DATABASE_URL"])
    run = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench", "load_test.py"), "--items", "4000",
         "--users", str(USERS), "--step-seconds", "20", "--alone-seconds", "4",
         "--warmup-seconds", "0", "--tasks-per-user", "30", "--json", str(figures)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = run.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # SIGTERM: the orchestrator stops its processes and drops its database on the way out.
        run.terminate()
        stdout, stderr = run.communicate(timeout=60)
        pytest.fail("the load scenario did not end within 240 s:\n" + stdout[-6000:] + stderr[-6000:])
    output = stdout[-6000:] + "\n" + stderr[-6000:]
    assert run.returncode == 0, output
    result = json.loads(figures.read_text())

    (step,) = result["steps"]
    assert step["users"] == USERS
    kinds = step["kinds"]
    assert {name for name, kind in kinds.items() if kind["requests"] > 0} >= PAGE_KINDS, output
    assert step["failures"] == 0 and step["failure_messages"] == [], output
    assert all(kind["failures"] == 0 for kind in kinds.values()), output
    # Every user logged in once, and each one's first round approved a task and started a batch.
    assert kinds["log in"]["requests"] == USERS
    assert kinds["approve"]["requests"] >= USERS
    assert kinds["start batch"]["requests"] >= USERS

    assert result["alone_before"] > 0 and result["alone_after"] > 0, output
    assert step["batch_rate"] is not None and step["batch_rate"] > 0, output
    assert result["big_batch_failed"] == 0

    assert _processes_with(result["marker"]) == []
    assert not _database_exists(result["marker"])
