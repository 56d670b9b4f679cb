"""What each API view takes and answers, attached to the view by ``@operation``.

An ``Operation`` holds the JSON Schemas of a view's query parameters, JSON or
multipart body, and its answers. ``portal.api.validation`` checks every
request against it before the view runs, and ``portal.api.openapi`` builds the
published document from the same objects, so the two cannot disagree. The
blueprint refuses to register a view that has none (see ``check_described``).
"""
import re
from dataclasses import dataclass

from jsonschema import Draft202012Validator, validators

from portal.api.schemas import page_of, ref


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


# JSON Schema counts 1.0 as an integer; the API never did (a count or an id
# written 2.0 is a client bug worth hearing about), so neither does the check.
_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: _is_integer(value))
_ITEMS = Draft202012Validator.VALIDATORS["items"]
_SCALAR_KEYWORDS = {"type", "minimum", "maximum", "pattern", "description"}


def _scalar_check(schema):
    """A plain function deciding what ``schema`` (type, bounds, pattern) decides,
    or None for any other schema."""
    if not isinstance(schema, dict) or not set(schema) <= _SCALAR_KEYWORDS:
        return None
    types = schema.get("type", ["integer", "string"])
    types = {types} if isinstance(types, str) else set(types)
    if not types <= {"integer", "string"}:
        return None
    low, high = schema.get("minimum"), schema.get("maximum")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

    def fits(value):
        if _is_integer(value):
            return "integer" in types and (low is None or value >= low) and (
                high is None or value <= high)
        if isinstance(value, str):
            return "string" in types and (pattern is None or pattern.search(value) is not None)
        return False
    return fits


def _items(validator, items, instance, schema):
    """``items`` with a fast path: a batch lists up to 50,000 ids, and checking
    each through the general validator is slow (docs/performance.md). When every item
    passes the plain check nothing is wrong; otherwise the general validator
    finds and words the faults."""
    fits = _scalar_check(items)
    if (fits is not None and "prefixItems" not in schema
            and isinstance(instance, list) and all(fits(value) for value in instance)):
        return
    yield from _ITEMS(validator, items, instance, schema)


Validator = validators.extend(Draft202012Validator, validators={"items": _items},
                              type_checker=_TYPES)

ERROR_REPLIES = {
    400: "Malformed request: a body that is not a JSON object (or nested more than 32 "
         "levels), a query parameter or multipart field of the wrong type or out of range.",
    401: "No valid API token.",
    403: "The caller's role may not do this.",
    404: "Missing, or not visible to the caller (the two are not told apart).",
    409: "The current state forbids it (done, suspended, countersigning, locked, "
         "or a batch in the wrong state).",
    413: "The body is larger than MAX_UPLOAD_MB.",
    422: "A body field is not valid: `errors` names each one.",
}


@dataclass(frozen=True)
class Param:
    """A query parameter; an empty value counts as absent."""
    name: str
    schema: dict
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Reply:
    description: str
    schema: dict | None = None
    media_type: str = "application/json"


def page_reply(description, key, item):
    return Reply(description, page_of(key, item))


class Operation:
    """One view's contract. ``errors`` lists the error statuses it may answer
    besides 401 (added unless ``public``). ``listed=False`` keeps a route out
    of the document (the documentation viewer's own page and script).
    ``messages`` replaces the generic message of a (field, JSON Schema
    keyword) pair with a more helpful one."""

    def __init__(self, summary, *, tag, replies, description="", query=(), body=None,
                 body_required=True, form=None, errors=(400,), public=False, listed=True,
                 messages=None):
        self.summary, self.tag, self.description = summary, tag, description
        self.query = tuple(query)
        self.body, self.body_required, self.form = body, body_required, form
        self.public, self.listed = public, listed
        self.messages = dict(messages or {})
        self.replies = dict(replies)
        for status in sorted(set(errors) | (set() if public else {401})):
            self.replies.setdefault(status, Reply(ERROR_REPLIES[status], ref("Error")))
        # Compiled once; check_schema makes a malformed schema fail at import.
        self.query_validators = {}
        for param in self.query:
            Validator.check_schema(param.schema)
            self.query_validators[param.name] = Validator(param.schema)
        self.body_validator = self._compile(body)
        self.form_validator = self._compile(form)

    @staticmethod
    def _compile(schema):
        if schema is None:
            return None
        Validator.check_schema(schema)
        return Validator(schema)


def operation(summary, **options):
    """Attach an ``Operation`` to a view; put it under the route decorator."""
    def attach(view):
        view.api_operation = Operation(summary, **options)
        return view
    return attach


def operation_of(view):
    return getattr(view, "api_operation", None)


def check_described(state):
    """Blueprint hook: every API route must have an operation, or the app
    does not start (a new route without schemas would be unchecked input)."""
    app, prefix = state.app, state.blueprint.name + "."
    missing = sorted(endpoint for endpoint, view in app.view_functions.items()
                     if endpoint.startswith(prefix) and operation_of(view) is None)
    if missing:
        raise RuntimeError("API views without @operation: " + ", ".join(missing))
