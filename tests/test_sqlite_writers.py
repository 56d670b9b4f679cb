"""SQLite's single write lock, as the portal shares it: a waiting transaction
starts as soon as the lock is free, and batch lanes take turns per slice."""
import logging
import sqlite3
import threading
import time

import pytest
from sqlalchemy import exc, text

from portal import extensions
from portal.batches import lane_turn as turns
from portal.extensions import db


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
        # SQLite's own busy handler would next look ~43 ms after this moment
        time.sleep(0.335)
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
    assert began - released["at"] < 0.025


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
    assert 0.3 <= time.monotonic() - started < 2
    db.session.execute(text("SELECT 1"))  # the session works again
    db.session.rollback()


def _lane(app, name, hold_seconds, log):
    with app.app_context():
        with turns.lane_turn():
            log.append((name, "in", time.monotonic()))
            time.sleep(hold_seconds)
            log.append((name, "out", time.monotonic()))


def test_lanes_take_turns_on_sqlite(sqlite_app):
    log = []
    first = threading.Thread(target=_lane, args=(sqlite_app, "first", 0.4, log))
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=_lane, args=(sqlite_app, "second", 0.0, log))
    second.start()
    first.join()
    second.join()
    moments = {(name, step): at for name, step, at in log}
    assert moments[("second", "in")] >= moments[("first", "out")]
    assert moments[("second", "in")] - moments[("first", "out")] < 0.1


def test_a_lane_whose_turn_never_comes_goes_ahead(sqlite_app, monkeypatch, caplog):
    """The holder may be frozen; the turn is a hint, claims keep items exactly once."""
    monkeypatch.setattr(turns, "MIN_PATIENCE_SECONDS", 0.3)
    sqlite_app.config["BATCH_SLICE_SECONDS"], slice_seconds = 0.05, sqlite_app.config[
        "BATCH_SLICE_SECONDS"]
    log = []
    try:
        frozen = threading.Thread(target=_lane, args=(sqlite_app, "frozen", 1.5, log))
        frozen.start()
        time.sleep(0.1)
        with caplog.at_level(logging.WARNING):
            _lane(sqlite_app, "waiting", 0.0, log)
        frozen.join()
    finally:
        sqlite_app.config["BATCH_SLICE_SECONDS"] = slice_seconds
    moments = {(name, step): at for name, step, at in log}
    waited = moments[("waiting", "in")] - moments[("frozen", "in")]
    assert 0.3 <= waited < 1.0 and moments[("waiting", "in")] < moments[("frozen", "out")]
    assert "lane turn not free" in caplog.text


def test_the_holder_sees_when_another_lane_waits_for_its_turn(sqlite_app):
    seen = []
    log = []
    with turns.lane_turn() as turn:
        seen.append(turn.others_waiting())
        waiter = threading.Thread(target=_lane, args=(sqlite_app, "waiter", 0.0, log))
        waiter.start()
        deadline = time.monotonic() + 5
        while not turn.others_waiting() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(turn.others_waiting())
        assert log == []  # still waiting for the turn
    waiter.join()
    assert seen == [False, True] and [step for _name, step, _at in log] == ["in", "out"]
    with turns.lane_turn() as turn:
        assert turn.others_waiting() is False  # the waiter's mark went with it
