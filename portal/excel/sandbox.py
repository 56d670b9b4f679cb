"""Reading an upload with python-calamine in a child process, so that a reader
bug costs one request, never the server.

python-calamine is Rust: a failed allocation, or a stack overflow, aborts the
process that called it instead of raising. ``extents`` refuses every file
known to do that before any reader sees it; this is the second wall. The
workbook is read by ``reader_child.py`` in a fresh interpreter with an
address-space limit (RLIMIT_AS) and a CPU-time limit, and this side gives it
the same number of seconds of wall-clock time, then kills it. A child that
dies, runs out of memory or time, or answers nonsense becomes a 400 "could
not be read".

A fresh interpreter (fork + exec by ``subprocess``) rather than a fork of
this process: web workers run threads (gunicorn's gthread) and forking a
threaded process copies locks other threads hold. The child imports only the
standard library and python-calamine, so it starts quickly. Its rows
arrive in frames while it converts the next ones, so the reader builds
entries from the first rows in parallel.

Frames are pickles of plain values, read with an unpickler that accepts no
class but datetime's, and no further than a size cap: even a child taken
over by a hostile file can make this process neither run code nor fill its
memory.
"""
import datetime
import io
import logging
import os
import pickle
import selectors
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from flask_babel import gettext as _

from portal.excel import UnusableFile, safety
from portal.excel.meta import LISTS_SHEET, META_SHEET, OWN_SHEET_KEY

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reader_child.py")
PIPE_CHUNK = 1024 * 1024
FRAME_LIMIT = 64 * 1024 * 1024    # one frame: 2,000 rows, or one task sheet
STDERR_KEPT = 16 * 1024           # of the child's messages, for the log
DATETIME_CLASSES = ("date", "datetime", "time", "timedelta")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Book:
    """What the child reads: sheet names in order, the visible ones, the
    metadata rows (None without a metadata sheet), single mode's first sheet
    as (start, iterator of rows) (None when it is one of the portal's own),
    and per-instance mode's task sheets as an iterator of (name, rows) (empty
    when there are too many to read)."""
    names: list
    visible: list
    meta: list | None
    first: tuple | None
    sheets: object


def could_not_read():
    return UnusableFile(_("The workbook could not be read: it may be damaged or too complex. "
                          "Save it again as .xlsx (Excel Workbook) and upload it again."))


@contextmanager
def open_workbook(data, mode, limits, *, max_sheets):
    """The Book of ``data`` as read in ``mode``, while the child runs; its
    iterators raise UnusableFile when the child fails. Rows arrive as the
    caller takes them, so the caller's work on them counts against
    ``limits.reader_seconds`` too (a 50,000-row file takes about 2 s in all)."""
    request = pickle.dumps({"data": data, "mode": mode, "meta_sheet": META_SHEET,
                            "lists_sheet": LISTS_SHEET, "own_key": OWN_SHEET_KEY,
                            "max_sheets": max_sheets}, protocol=pickle.HIGHEST_PROTOCOL)
    child = _Child(limits)
    try:
        child.send(request)
        frames = child.frames()
        head = next(frames)
        if not (len(head) == 5 and head[0] == "book" and _names(head[1]) and _names(head[2])
                and (head[3] is None or _rows_of(head[3]))
                and (head[4] is None or _start(head[4]))):
            raise could_not_read()
        _kind, names, visible, meta, start = head
        first = (start, _rows(frames)) if start is not None else None
        yield Book(names, visible, meta, first,
                   _sheets(frames) if mode != "single" else iter(()))
    finally:
        child.close()


# The shapes the reader relies on (what a child taken over could get wrong).

def _names(value):
    return type(value) is list and all(type(name) is str for name in value)


def _rows_of(value):
    return type(value) is list and all(type(row) is tuple for row in value)


def _start(value):
    return type(value) is tuple and len(value) == 2 and all(type(n) is int for n in value)


def _rows(frames):
    for frame in frames:
        if frame == ("end",):
            return
        if len(frame) != 2 or frame[0] != "rows" or not _rows_of(frame[1]):
            raise could_not_read()
        yield from frame[1]


def _sheets(frames):
    for frame in frames:
        if frame == ("end",):
            return
        if not (len(frame) == 3 and frame[0] == "sheet" and type(frame[1]) is str
                and _rows_of(frame[2])):
            raise could_not_read()
        yield frame[1], frame[2]


class _Values(pickle.Unpickler):
    """Plain values only: any class but datetime's is refused."""

    def find_class(self, module, name):
        if module == "datetime" and name in DATETIME_CLASSES:
            return getattr(datetime, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")


def _load(payload):
    try:
        frame = _Values(io.BytesIO(payload)).load()
    except Exception:                   # whatever a malformed pickle raises
        log.warning("the workbook reader wrote %s unreadable bytes", len(payload))
        raise could_not_read()
    if not isinstance(frame, tuple) or not frame:
        raise could_not_read()
    if frame[0] == "error":
        if frame[1:] == ("damaged",):
            raise safety.damaged()
        log.warning("the workbook reader failed on an upload")
        raise could_not_read()
    return frame


class _Child:
    """One run of reader_child.py with its limits."""

    def __init__(self, limits):
        self.seconds = max(1, int(limits.reader_seconds))
        self.cap = limits.reader_memory_mb * 1024 * 1024    # most bytes it may write
        self.deadline = time.monotonic() + self.seconds
        self.errors = b""
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", CHILD, str(self.cap), str(self.seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                close_fds=True)
        except OSError:
            log.exception("could not start the workbook reader")
            raise could_not_read()
        self.selector = selectors.DefaultSelector()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            os.set_blocking(stream.fileno(), False)

    def send(self, request):
        """Write the whole request; the child reads it all before it writes."""
        view, sent = memoryview(request), 0
        stdin = self.process.stdin
        self.selector.register(stdin, selectors.EVENT_WRITE)
        try:
            while sent < len(view):
                if not self.selector.select(self._remaining()):
                    continue
                try:
                    sent += os.write(stdin.fileno(), view[sent:sent + PIPE_CHUNK])
                except BrokenPipeError:
                    break                 # it died: its exit code tells why
        finally:
            self.selector.unregister(stdin)
            stdin.close()

    def frames(self):
        """Each frame the child writes, unpickled, until it closes stdout."""
        buffer, received = bytearray(), 0
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.selector.register(self.process.stderr, selectors.EVENT_READ)
        while True:
            while len(buffer) >= 8:
                size = int.from_bytes(buffer[:8], "big")
                if size > FRAME_LIMIT:
                    log.warning("the workbook reader announced a frame of %s bytes", size)
                    raise could_not_read()
                if len(buffer) < 8 + size:
                    break
                payload = bytes(buffer[8:8 + size])
                del buffer[:8 + size]
                yield _load(payload)
            chunk = self._read()
            if chunk is None:
                break
            received += len(chunk)
            if received > self.cap:
                log.warning("the workbook reader wrote more than %s bytes", self.cap)
                raise could_not_read()
            buffer += chunk
        self._finish()
        raise could_not_read()          # the frames ended without ("end",)

    def _remaining(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            log.warning("the workbook reader took more than %s s", self.seconds)
            raise could_not_read()
        return remaining

    def _read(self):
        """The next bytes of stdout, or None once the child closed it."""
        stdout = self.process.stdout
        while True:
            for key, _event in self.selector.select(self._remaining()):
                chunk = os.read(key.fileobj.fileno(), PIPE_CHUNK)
                if key.fileobj is not stdout:
                    if chunk:
                        self.errors = (self.errors + chunk)[-STDERR_KEPT:]
                    else:
                        self.selector.unregister(key.fileobj)
                    continue
                if chunk:
                    return chunk
                self.selector.unregister(stdout)
                return None

    def _finish(self):
        """After stdout closed without an end: the child died; log how."""
        try:
            returncode = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            returncode = None
        log.warning("the workbook reader stopped early (exit %s): %s", returncode,
                    self.errors[-2000:].decode("utf-8", "replace"))

    def close(self):
        """Kill the child unless it has ended, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()
        self.selector.close()
