"""SQLite's single write lock, as the portal shares it: a waiting transaction
starts once the lock is free, and gives up with a clear error at the wait limit.
(How soon is measured in bench/bench_under_load.py, not asserted here.)"""
import sqlite3
import threading
import time

import pytest
from sqlalchemy import exc, text

from portal.infra import extensions
from portal.infra.extensions import db


@pytest.fixture
def sqlite_app(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL locks rows")
    return app


def _hold_write_lock():
    """Another process's writer, as far as SQLite can tell: its own connection."""
    holder = sqlite3.connect(db.engine.url.database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_waiting_transaction_starts_as_soon_as_the_lock_is_free(sqlite_app):
    holder = _hold_write_lock()
    released = {}

    def release_later():
        time.sleep(0.3)
        holder.execute("COMMIT")
        released["at"] = time.monotonic()

    thread = threading.Thread(target=release_later)
    thread.start()
    db.session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE waits here
    began = time.monotonic()
    db.session.rollback()
    thread.join()
    holder.close()
    assert began >= released["at"]


def test_a_transaction_gives_up_after_the_wait_limit_with_a_clear_error(sqlite_app, monkeypatch):
    monkeypatch.setattr(extensions, "SQLITE_LOCK_WAIT_SECONDS", 0.3)
    holder = _hold_write_lock()
    started = time.monotonic()
    try:
        with pytest.raises(exc.OperationalError, match="database is locked"):
            db.session.execute(text("SELECT 1"))
    finally:
        db.session.rollback()
        holder.close()
    assert time.monotonic() - started >= 0.3  # it waited for the lock before giving up
    db.session.execute(text("SELECT 1"))  # the session works again
    db.session.rollback()
