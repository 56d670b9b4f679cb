"""Test helpers shared by the test modules: data factories, login, real workers, polling."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_DIR = tempfile.mkdtemp(prefix="portal-worker-logs-")


# --- data helpers -----------------------------------------------------------------

from portal.demo import EXPENSE  # noqa: E402,F401  (the definition tests load)

GOOD_FORM = {"amount": 12.5, "category": "Travel"}


class Factory:
    """Builds users, definitions and tasks, committing each step."""

    PASSWORD = "password-123"

    def __init__(self, app):
        self.app = app

    def user(self, name, role="user", workflow_roles="", locale=None):
        from portal.accounts import create_user
        from portal.infra.extensions import db
        user = create_user(name, self.PASSWORD, role, workflow_roles, locale)
        db.session.commit()
        return user

    def process(self, definition=None):
        from portal.infra.extensions import db
        from portal.workflow.process_files import load_definition
        process, _created = load_definition(definition or EXPENSE)
        db.session.commit()
        return process

    def tasks(self, count, process_key="expense", starter=None, title="Claim"):
        """Start ``count`` instances; returns their first tasks."""
        from portal.infra.extensions import db
        from portal.models import User
        from portal.workflow.engine import start_instance
        starter = starter or db.session.execute(db.select(User).limit(1)).scalar_one()
        tasks = [start_instance(process_key, f"{title} {i}", {}, starter).tasks[0]
                 for i in range(count)]
        db.session.commit()
        return tasks

    def batch(self, creator, tasks, **options):
        """A committed batch of ``tasks`` made through the service, approving with
        GOOD_FORM unless ``options`` say otherwise."""
        from portal.batches import creation
        from portal.infra.extensions import db
        options.setdefault("action", "approve")
        options.setdefault("form", GOOD_FORM)
        batch = creation.create_batch(creator, tasks[0].node, task_ids=[t.id for t in tasks],
                                      **options)
        db.session.commit()
        return batch

    def token(self, user):
        from portal.accounts import issue_token
        from portal.infra.extensions import db
        token = issue_token(user)
        db.session.commit()
        return token

    def standard(self, tasks=0):
        """alice (manager node), bob (finance role), carol, supervisor, admin + process."""
        users = {
            "alice": self.user("alice"), "bob": self.user("bob", workflow_roles="finance"),
            "carol": self.user("carol"), "sam": self.user("sam", role="supervisor"),
            "admin": self.user("admin", role="admin"),
        }
        self.process()
        if tasks:
            self.tasks(tasks, starter=users["admin"])
        return users


class Api:
    """A test client that sends one user's bearer token with every request."""

    def __init__(self, client, token):
        self.client, self.token = client, token

    def _open(self, method, url, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.client.open("/api/v1" + url, method=method, headers=headers, **kwargs)

    def get(self, url, **kwargs):
        return self._open("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self._open("POST", url, **kwargs)


def csrf_token(client, url):
    """The CSRF token a page at ``url`` embeds in its forms."""
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, f"no csrf token on {url}"
    return match.group(1)


def login(client, username, password=Factory.PASSWORD):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token}, follow_redirects=False)


# --- real worker processes ---------------------------------------------------------

class Workers:
    """Real ``flask --app app worker`` processes on the test database and Redis."""

    def __init__(self):
        self.procs = []

    def start(self, count=2, burst=False, extra_env=None):
        env = dict(os.environ)
        env.update(extra_env or {})
        for _ in range(count):
            args = [sys.executable, "-m", "flask", "--app", "app", "worker"]
            if burst:
                args.append("--burst")
            log = open(os.path.join(LOG_DIR, f"worker-{os.getpid()}-{len(self.procs)}.log"), "ab")
            self.procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))
        return self.procs[-count:]

    def kill(self, proc, sig=signal.SIGKILL):
        """Signal a worker and every process it forked (its work-horse included)."""
        signal_tree(proc.pid, sig)

    def stop(self):
        for proc in self.procs:
            self.kill(proc)
            proc.wait(timeout=10)
        self.procs = []


def process_tree(pid):
    """A process and all its descendants. RQ's work-horse calls setpgrp(), so
    signalling the worker's process group alone would miss it."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def signal_tree(pid, sig):
    # Collect the tree first: once the worker dies its children are re-parented.
    for member in process_tree(pid):
        try:
            member.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _end_transaction():
    """Leave no transaction open while waiting: on SQLite every transaction
    holds the write lock, and an idle one would stall the workers."""
    from flask import has_app_context
    if has_app_context():
        from portal.infra.extensions import db
        db.session.rollback()


def snapshot(model, object_id):
    """A detached copy of one row, read in a transaction that is already closed."""
    from portal.infra.extensions import db
    db.session.rollback()
    row = db.session.get(model, object_id)
    if row is not None:
        db.session.expunge(row)
    db.session.rollback()
    return row


def counts_from_items(batch_id):
    """The batch counters derived from its items themselves, to check the batch row's against."""
    from portal.infra.extensions import db
    from portal.models import BatchItem
    from portal.models.batches import COUNTER_OF
    rows = db.session.execute(
        db.select(BatchItem.status, db.func.count()).where(BatchItem.batch_id == batch_id)
        .group_by(BatchItem.status)).all()
    counts = {name: 0 for name in ("pending", "running", "success", "ignored", "failed", "cancelled")}
    for status, number in rows:
        counts[COUNTER_OF[status]] += number
    return counts


def assert_counters_match_items(batch_id):
    """The batch row's counters equal what its items say, and add up to its total."""
    from portal.infra.extensions import db
    from portal.models import Batch
    db.session.rollback()
    batch = db.session.get(Batch, batch_id)
    derived = counts_from_items(batch_id)
    assert {key: getattr(batch, key) for key in derived} == derived
    assert batch.total == sum(derived.values())
    return batch


def wait_for(predicate, timeout=60, interval=0.1, message="condition"):
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        _end_transaction()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")
