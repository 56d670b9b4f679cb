"""Excel figures on a throw-away SQLite database.

    .venv/bin/python bench/bench_excel.py [--rows 50000] [--template-tasks 10000]

1. template: a single-mode template prefilled with 10,000 pending tasks (target <= 3 s);
   a per-instance template (1,000 sheets, its default cap) for comparison;
2. upload: a filled 50,000-row single-mode workbook checked, read, validated and turned
   into a batch (target <= 5 s and <= 300 MB peak).

Each measured step runs in a fresh child process. Peak memory is the process's peak
resident size (Python, Rust and SQLite alike): on Linux the VmHWM counter, restarted
just before the step (``/proc/self/clear_refs``), elsewhere ``getrusage``'s ru_maxrss.
Python's own peak allocation (``tracemalloc``) is measured in a second, untimed run of
the read-and-validate part, since tracing slows Python down severalfold.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# As Excel stores them: a number, a dropdown word, a date cell, yes/no.
FORM = {"amount": 12.5, "category": "Travel", "paid_on": date(2024, 5, 1), "urgent": "yes"}


def make_app(workdir):
    """The portal on ``workdir``'s SQLite file, migrated (as tests/conftest.py does)."""
    os.environ["PORTAL_INSTANCE_PATH"] = os.path.join(workdir, "instance")
    os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(workdir, "bench.db")
    os.environ.setdefault("SECRET_KEY", "bench")
    from flask_migrate import upgrade
    from portal import create_app
    app = create_app({"RATELIMIT_STORAGE_URI": "memory://", "REDIS_URL": "redis://unused",
                      "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
                      "MAX_IMPORT_ROWS": 100000})
    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
    return app


def add_tasks(node, user, count, title):
    """``count`` running instances with a pending task for ``user`` at ``node`` (Core inserts).

    The engine runs once for the node (``bench.setup.engine_position``): every instance shares its state and
    every task its engine task id. The task is ``user``'s whatever the node's assignee, so that two users
    each get their own tasks at the one node.
    """
    from sqlalchemy import insert
    from bench.setup import engine_position
    from portal.infra.extensions import db
    from portal.models import Instance, Task
    from portal.models.base import utcnow
    state, engine_task_id, _assignee, data = engine_position(node)
    now = utcnow()
    first = db.session.execute(
        db.select(db.func.coalesce(db.func.max(Instance.id), 0))).scalar() + 1
    db.session.execute(insert(Instance), [
        {"id": first + i, "process_id": node.process_id, "title": f"{title} {i}", "data": data,
         "state": state, "status": "running", "suspended": False, "created_by_id": user.id,
         "created_at": now, "updated_at": now} for i in range(count)])
    db.session.execute(insert(Task), [
        {"instance_id": first + i, "node_id": node.id, "status": "pending", "created_at": now,
         "engine_task_id": engine_task_id, "assignee_user_id": user.id} for i in range(count)])
    db.session.commit()
    return list(db.session.execute(db.select(Task.id).where(
        Task.assignee_user_id == user.id, Task.instance_id >= first).order_by(Task.id)).scalars())


def prepare(workdir, rows, template_tasks):
    """Users, the expense process, tasks, and the filled upload file on disk."""
    app = make_app(workdir)
    with app.app_context():
        from portal.accounts import create_user
        from portal.demo import EXPENSE
        from portal.excel.compose import build_workbook
        from portal.excel.writer import TaskValues
        from portal.infra.extensions import db
        from portal.workflow.process_files import load_definition
        alice = create_user("alice", "password-123")
        tina = create_user("tina", "password-123")
        process, _ = load_definition(EXPENSE)
        db.session.commit()
        node = process.nodes[0]
        upload_ids = add_tasks(node, alice, rows, "Upload")
        add_tasks(node, tina, template_tasks, "Template")
        filled = (TaskValues({"task_id": task_id, "title": f"Upload {i}", "action": "approve",
                              "comment": f"row {i}", **FORM})
                  for i, task_id in enumerate(upload_ids))
        data = build_workbook(node, "single", filled, locale="en")
        with open(os.path.join(workdir, "upload.xlsx"), "wb") as fh:
            fh.write(data)
        return node.id, len(data)


def _status_mb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(key)


def rss_now_mb():
    try:
        return _status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(step):
    """Run ``step()``: (result, seconds, peak resident MB during the step)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")                  # restart the peak counter at the current size
        peak = lambda: _status_mb("VmHWM")
    except OSError:
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start, peak()


def python_peak_mb(step):
    tracemalloc.start()
    step()
    value = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return value


def child(phase, workdir, node_id):
    """One measured step, in this fresh process; prints a JSON line."""
    app = make_app(workdir)
    with app.app_context():
        from portal.accounts import find_user
        from portal.infra.extensions import db
        from portal.models import Node
        node = db.session.get(Node, node_id)
        figures = {"phase": phase}
        if phase == "upload":
            from portal.batches import imports
            from portal.excel import safety
            with open(os.path.join(workdir, "upload.xlsx"), "rb") as fh:
                data = fh.read()
            alice = find_user("alice")
            db.session.rollback()
            figures["rss_before_mb"] = rss_now_mb()

            def step():
                batch = imports.create_import_batch(alice, node, "single", data)
                db.session.commit()
                return batch.total, batch.pending, batch.failed
            result, figures["seconds"], figures["rss_peak_mb"] = measure(step)
            # the parts apart, after the measured step (the tasks are taken by now,
            # which does not matter to reading and validating)
            start = time.perf_counter()
            safety.check_upload(data, safety.limits_from_config(app.config))
            figures["safety_s"] = time.perf_counter() - start
            start = time.perf_counter()
            imports.read(data, node, "single")
            figures["read_s"] = time.perf_counter() - start
            figures["heap_peak_mb"] = python_peak_mb(
                lambda: imports.inspect(alice, node, "single", data))
            db.session.rollback()
            figures["total_pending_failed"] = result
        else:
            from portal.excel.templates import build_template
            tina = find_user("tina")
            mode = "single" if phase == "template" else "per_instance"
            figures["rss_before_mb"] = rss_now_mb()
            data, figures["seconds"], figures["rss_peak_mb"] = measure(
                lambda: build_template(tina, node, mode, "en"))
            figures["bytes"] = len(data)
            db.session.rollback()
        print(json.dumps(figures))


def run_child(phase, workdir, node_id):
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", phase, "--dir", workdir,
         "--node", str(node_id)], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--template-tasks", type=int, default=10000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    parser.add_argument("--child")
    parser.add_argument("--dir")
    parser.add_argument("--node", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.dir, args.node)

    workdir = tempfile.mkdtemp(prefix="bench-excel-")
    try:
        report(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def report(args, workdir):
    start = time.perf_counter()
    node_id, size = prepare(workdir, args.rows, args.template_tasks)
    print(f"setup: {args.rows} + {args.template_tasks} tasks and a {size / 2 ** 20:.1f} MB "
          f"upload written in {time.perf_counter() - start:.1f} s ({workdir})")
    template = run_child("template", workdir, node_id)
    print(f"template, single mode, {args.template_tasks} tasks: {template['seconds']:.2f} s "
          f"(target <= 3 s), {template['bytes'] / 2 ** 20:.2f} MB, process peak RSS "
          f"{template['rss_peak_mb']:.0f} MB ({template['rss_before_mb']:.0f} MB before)")
    per_instance = run_child("template_per_instance", workdir, node_id)
    print(f"template, per-instance mode, the first {min(1000, args.template_tasks)} tasks "
          f"(one sheet each; 1,000 is the default MAX_TEMPLATE_SHEETS): "
          f"{per_instance['seconds']:.2f} s, "
          f"{per_instance['bytes'] / 2 ** 20:.2f} MB")
    upload = run_child("upload", workdir, node_id)
    total, pending, failed = upload["total_pending_failed"]
    print(f"upload, single mode, {args.rows} rows -> batch: {upload['seconds']:.2f} s "
          f"(target <= 5 s); of which safety checks {upload['safety_s']:.2f} s, "
          f"reading {upload['read_s']:.2f} s (measured apart afterwards)")
    print(f"  batch total={total} pending={pending} failed={failed}; process peak RSS "
          f"{upload['rss_peak_mb']:.0f} MB (target <= 300 MB; {upload['rss_before_mb']:.0f} MB "
          f"before the step); Python's own peak while reading and validating "
          f"{upload['heap_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
