"""On SQLite, one lane at a time per database file.

SQLite has a single write lock and every item transaction takes it, so two
lanes can never run items side by side; what they can do is take turns item
by item. Each turn costs the next process its page cache (SQLite drops it
when another connection has written): two lanes alternating item by item ran
at 0.64-0.70 of a one-process loop, against about 0.8 taking turns per slice.
So lanes take turns per slice: a lane holds an advisory file lock next to
the database while it works, and a lane of another worker waits for it,
saying so with a shared lock on a second file, so that the holder ends its
work at the end of its current slice.

The lock is a hint, never a guarantee the engine relies on: claims, leases
and the batch row lock keep items exactly once without it. So a lane that
waits longer than a few slices (the holder may be frozen) goes ahead anyway.
The kernel drops both locks when their process ends, however it ends.
PostgreSQL locks rows, so lanes there run side by side.
"""
import fcntl
import time
from contextlib import ExitStack, contextmanager

from flask import current_app

from portal.extensions import db

POLL_SECONDS = 0.005
# A lane waits at least this long for its turn before running alongside.
MIN_PATIENCE_SECONDS = 5.0


def _lock_path():
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database + ".lanes.lock"


def _try_lock(handle, mode):
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class Turn:
    """The turn a lane holds (or, on PostgreSQL, needs not hold)."""

    def __init__(self, waiting_path=None):
        self.waiting_path = waiting_path

    def others_waiting(self):
        """Whether another lane waits for this turn."""
        if self.waiting_path is None:
            return False
        with open(self.waiting_path, "a") as waiting:
            # Waiters hold a shared lock; an exclusive one is free only without them.
            return not _try_lock(waiting, fcntl.LOCK_EX)


def _wait_for_turn(turn_file, waiting_file, patience):
    """Poll for the turn, showing that we wait meanwhile; False on giving up."""
    deadline = time.monotonic() + patience
    showing = False
    try:
        while not _try_lock(turn_file, fcntl.LOCK_EX):
            # The holder takes the waiting file exclusively only for an instant.
            showing = showing or _try_lock(waiting_file, fcntl.LOCK_SH)
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True
    finally:
        if showing:
            fcntl.flock(waiting_file, fcntl.LOCK_UN)


@contextmanager
def lane_turn():
    """Wait for this database's lane turn (SQLite only) and hold it for the
    block, which gets the Turn."""
    path = _lock_path()
    if path is None:
        yield Turn()
        return
    patience = max(MIN_PATIENCE_SECONDS, 3 * current_app.config["BATCH_SLICE_SECONDS"])
    with ExitStack() as files:
        turn_file = files.enter_context(open(path, "a"))
        waiting_file = files.enter_context(open(path + ".waiting", "a"))
        if not _wait_for_turn(turn_file, waiting_file, patience):
            current_app.logger.warning("lane turn not free after %.0f s; running alongside", patience)
        yield Turn(path + ".waiting")
