"""Unbound Flask extensions; ``init_app`` binds them to an application.

The Redis connection is created lazily per process (see ``portal.infra.queueing``),
so importing this module opens nothing.
"""
import sqlite3
import time

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event

# Stable constraint names keep Alembic revisions identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


# How long a SQLite transaction waits for the write lock, and how often it asks.
SQLITE_LOCK_WAIT_SECONDS = 30
SQLITE_LOCK_POLL_SECONDS = 0.0005


def _configure_sqlite(engine):
    """Make every SQLite transaction a write transaction (BEGIN IMMEDIATE).

    A read-then-write transaction in SQLite's default deferred mode fails at
    once with "database is locked" when another writer got there first; an
    immediate transaction waits for the lock instead. WAL lets readers of
    other connections proceed meanwhile.

    The wait is ours rather than SQLite's busy handler: that handler sleeps
    1, 2, 5, 10 ... 100 ms between tries, so a process that releases the lock
    and takes it again at once (a batch lane going from item to item) keeps it
    while every waiter sleeps. Asking every half millisecond gives waiters a
    fair chance and leaves the lock idle for at most that long.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_LOCK_WAIT_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=0")  # BEGIN waits in _begin_immediate
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        if not _begin_immediate(connection.connection.driver_connection):
            # Out of time, or another error: this try raises it wrapped like any
            # other statement's error (or, just now free, begins after all).
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_immediate(sqlite_connection):
    """BEGIN IMMEDIATE, asking again while the database is busy; False when
    it gave up."""
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
    while True:
        try:
            sqlite_connection.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                return False
            time.sleep(SQLITE_LOCK_POLL_SECONDS)


def init_app(app):
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    limiter.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _configure_sqlite(db.engine)


def _select_locale():
    from flask import has_request_context, request, session
    from flask_login import current_user

    if not has_request_context():  # workers and CLI: the default, or force_locale
        return None
    languages = ["en", "zh_CN"]
    chosen = session.get("lang")
    if chosen in languages:
        return chosen
    if getattr(current_user, "is_authenticated", False) and current_user.locale in languages:
        return current_user.locale
    best = request.accept_languages.best_match(["en", "zh_CN", "zh", "zh-CN"])
    if best and best.startswith("zh"):
        return "zh_CN"
    return "en"
