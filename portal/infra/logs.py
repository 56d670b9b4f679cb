"""Log lines: one line per event, JSON objects when ``LOG_FORMAT=json``, plain text otherwise.

Every line says, where they apply, the request id and user of the web request it happened in, the RQ job it
happened in, and the batch and item a log call names with ``extra={"batch_id": .., "item_id": ..}``.

A request's id comes from its ``X-Request-ID`` header when that is a sane token (a proxy or a client that
traces requests chose it), else it is made here; every answer carries it back in ``X-Request-ID`` and error
pages show it, so a person who reports an error gives the id that finds its log lines.

The handler sits on the root logger, so the portal's loggers, RQ's and the libraries' all write through it.
"""
import json
import logging
import re
import sys
import uuid
from datetime import datetime, timezone

from flask import g, has_request_context, request
from rq import get_current_job
from sqlalchemy import inspect as orm_inspect

REQUEST_ID_HEADER = "X-Request-ID"
# What a request id taken from outside may look like: it is written into logs and
# answers, so nothing that could break a line, a header or a JSON string.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ENVIRON_KEY = "portal.request_id"
# Fields a log call may pass in ``extra`` that the line shows.
EXTRA_FIELDS = ("batch_id", "item_id")

_handler = None


def current_request_id():
    """The id of the request being served (chosen on first use), or None outside a request."""
    if not has_request_context():
        return None
    environ = request.environ
    request_id = environ.get(_ENVIRON_KEY)
    if request_id is None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        environ[_ENVIRON_KEY] = request_id
    return request_id


def _user_name(user):
    """The user's name as already loaded, else their id: a log line never queries the
    database (it may be written while a transaction is failing)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        state = orm_inspect(user)
    except Exception:  # noqa: BLE001 - not a mapped object: nothing more to say
        return None
    name = state.dict.get("username")
    if name is not None:
        return name
    return f"#{state.identity[0]}" if state.identity else None


def _current_user_name():
    if not has_request_context():
        return None
    # The API's token user, else the login session's user if a view loaded it
    # (Flask-Login keeps it on g); reading current_user here would load it.
    return _user_name(g.get("api_user") or g.get("_login_user"))


def _current_job_id():
    job = get_current_job()
    return job.id if job is not None else None


class ContextFilter(logging.Filter):
    """Adds the request id, user and RQ job id of where the record was made (unless the
    log call gave them)."""

    SOURCES = (("request_id", current_request_id), ("user", _current_user_name),
               ("job_id", _current_job_id))

    def filter(self, record):
        for name, source in self.SOURCES:
            if getattr(record, name, None) is None:
                try:
                    setattr(record, name, source())
                except Exception:  # noqa: BLE001 - a line without context beats a lost line
                    setattr(record, name, None)
        return True


def _context(record):
    """The context fields of ``record`` that apply, in a fixed order."""
    fields = {}
    for name in ("request_id", "user", "job_id", *EXTRA_FIELDS):
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context that applies,
    and ``exception`` (the traceback) when there is one."""

    def format(self, record):
        line = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_context(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request_id=.. user=..]``; line breaks inside the
    message or a traceback are written as ``\\n`` so that an event stays one line."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record):
        text = super().format(record)  # appends the traceback, if any
        context = _context(record)
        if context:
            text += " [" + " ".join(f"{key}={value}" for key, value in context.items()) + "]"
        return text.replace("\r", "").replace("\n", "\\n")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when the line is written (test capture included)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure_logging(log_format):
    """Send every logger's lines through one root handler in ``log_format`` ("json" or "text").

    Safe to call again (each app made in a process calls it): the handler is put back if
    something removed it and takes the latest format.
    """
    global _handler
    root = logging.getLogger()
    if _handler is None:
        _handler = _StderrHandler()
        _handler.addFilter(ContextFilter())
    _handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if _handler not in root.handlers:
        root.addHandler(_handler)
    # The portal's own INFO lines (recovery passes, the scheduler's registrations) are wanted;
    # the libraries keep their levels (RQ's worker sets INFO on its own logger).
    portal_logger = logging.getLogger("portal")
    if portal_logger.level == logging.NOTSET:
        portal_logger.setLevel(logging.INFO)
    return _handler


def init_app(app):
    """Configure logging for this process and give every request its id."""
    configure_logging(app.config.get("LOG_FORMAT", "text"))
    from flask.logging import default_handler
    app.logger.removeHandler(default_handler)  # the root handler writes app.logger's lines

    @app.after_request
    def _send_request_id(response):
        response.headers[REQUEST_ID_HEADER] = current_request_id()
        return response

    @app.context_processor
    def _request_id():
        return {"request_id": current_request_id()}
