"""Ids in URLs, query strings and forms: whole numbers a 32-bit id column can hold.

Anything else names no row. Werkzeug's ``int`` converter and ``type=int``
accept any number of digits, which PostgreSQL then refuses with an error (a
500); these helpers turn such values into a 404 (paths) or a 400 (parameters)
before any query sees them.
"""
import re

from flask import abort, request
from flask_babel import gettext as _
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter, ValidationError

from portal.models.base import MAX_ID

_ID_TEXT = re.compile(r"[0-9]{1,10}")  # ASCII digits: int() also takes "²" and "١"


class IdConverter(IntegerConverter):
    """``<int:name>`` in every route: 1 to MAX_ID, else the URL matches nothing (404)."""

    def __init__(self, url_map, fixed_digits=0, min=1, max=MAX_ID, signed=False):
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)

    def to_python(self, value):
        # Out of range names no row: a 404 even where a route of another method
        # has the same shape (werkzeug would go on matching and answer 405).
        try:
            return super().to_python(value)
        except ValidationError:
            raise NotFound()


def init_app(app):
    """Make ``<int:...>`` route parameters ids; call before blueprints register."""
    app.url_map.converters["int"] = IdConverter


def parse_id(text):
    """The id written in ``text``, or None when it is not one."""
    text = (text or "").strip()
    if not _ID_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def id_arg(name, values=None):
    """The id in query parameter ``name``: None when absent, 400 when not an id."""
    raw = (request.args if values is None else values).get(name)
    if raw in (None, ""):
        return None
    value = parse_id(raw)
    if value is None:
        abort(400, description=_("%(name)s must be a whole number from 1 to %(max)s.",
                                 name=name, max=MAX_ID))
    return value


def id_list(values):
    """The ids among ``values`` (a form's list), 400 when any is not one."""
    ids = [parse_id(v) for v in values]
    if any(v is None for v in ids):
        abort(400, description=_("Item ids must be whole numbers."))
    return ids
