"""``flask --app app run-all``: what ``make run`` starts, in the foreground.

Applies migrations, loads demo data into an empty database, starts the
embedded Redis unless REDIS_URL is set, then the web server, the RQ workers
(two on PostgreSQL, one on SQLite, for the batch work), one RQ worker for the
notice deliveries (so a slow webhook receiver never holds batch work) and the
scheduler as child processes.
Ctrl-C (or SIGTERM) stops them all.
"""
import os
import signal
import subprocess
import sys
import time

import click
from flask import current_app
from flask_migrate import upgrade

from portal.infra.extensions import db
from portal.models import User


def worker_count():
    """Two RQ workers on PostgreSQL; one on SQLite, the development mode, whose
    single write lock runs one item at a time anyway."""
    return 1 if db.engine.dialect.name == "sqlite" else 2


def _children(env, port, workers):
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    web = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
           "--threads", "4", "--access-logfile", "-", "app:app"]
    return ([("web", web)]
            + [(f"worker-{n}", flask + ["worker", "--name", f"w{n}-{os.getpid()}",
                                        "--queue", "batches"])
               for n in range(1, workers + 1)]
            + [("deliveries", flask + ["worker", "--name", f"d1-{os.getpid()}",
                                       "--queue", "deliveries"])]
            + [("scheduler", flask + ["scheduler"])])


def child_environment(app, port):
    """(the environment of the processes run-all starts, the warning to show once or None).

    The children serve and link to ``port``: without PORTAL_URL, e-mail links point to the
    address served here, and the children are given it so that each does not warn again."""
    from portal.infra.queueing import redis_url_for
    from portal.notices.texts import portal_url_warning, served_url
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url_for(app)
    env["PORTAL_INSTANCE_PATH"] = app.instance_path
    env.setdefault("SECRET_KEY", app.config["SECRET_KEY"])
    env["PORT"] = str(port)
    with app.app_context():
        warning = portal_url_warning(served_url(port))
    if warning:
        env["PORTAL_URL"] = served_url(port)
    return env, warning


@click.command("run-all")
@click.option("--port", default=lambda: int(os.environ.get("PORT", 5000)), show_default="5000")
def run_all_command(port):
    """Migrate, seed, and run web + workers + scheduler until Ctrl-C."""
    from portal.demo import DEMO_PASSWORD, DEMO_USERS, load_demo

    upgrade()
    # Metric files of the previous run would keep adding to this run's counters.
    from portal.infra.metrics import clear_multiprocess_dir
    clear_multiprocess_dir(current_app)
    if db.session.execute(db.select(db.func.count(User.id))).scalar() == 0:
        load_demo()
        db.session.commit()
    workers = worker_count()
    db.session.remove()
    db.engine.dispose()

    env, warning = child_environment(current_app._get_current_object(), port)
    if warning:
        click.echo(f"Warning: {warning}", err=True)
    procs = []
    for name, argv in _children(env, port, workers):
        procs.append((name, subprocess.Popen(argv, env=env, start_new_session=True)))

    click.echo(f"\nBatch approval portal on http://127.0.0.1:{port} "
               f"({workers} worker{'s' if workers > 1 else ''} and one for the deliveries)")
    click.echo(f"Demo logins, password {DEMO_PASSWORD}:")
    for name, role, roles, locale in DEMO_USERS:
        click.echo(f"  {name:<11} {role}{' + ' + roles if roles else ''}")
    click.echo("Ctrl-C stops everything.\n")

    stopping = False

    def _stop(*_args):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            for name, proc in procs:
                if proc.poll() is not None:
                    click.echo(f"{name} exited with {proc.returncode}; stopping.", err=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for _name, proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + 10
        for _name, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        click.echo("stopped.")
