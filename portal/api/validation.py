"""Checks a request against its view's ``Operation`` before the view runs.

* Query parameters and multipart fields arrive as text: an integer field must
  be ASCII digits (``int()`` would also take "1_000", " 7" and "١"), then its
  value is checked against the schema. Faults are a 400.
* A JSON body is parsed here, once: a body that is not JSON, not an object,
  or nested more than ``MAX_DEPTH`` levels is a 400 (Python's parser would
  raise RecursionError on ``[[[[...``, a 500). Then its fields are checked
  against the schema; faults are a 422 naming each field, in the contract's
  error shape. The parsed body waits in ``g.api_json`` for the view.
* Text anywhere in the input may not hold NUL or unpaired surrogates, uploaded
  files' names included: the databases refuse them (PostgreSQL with an error, a 500).

The views keep their own finer checks (node-specific forms, who may act).
"""
import json
import re

from flask import g, request
from flask_babel import gettext as _, lazy_gettext as _l

from portal.api.errors import ApiError
from portal.errors import ValidationFailed
from portal.infra.http_files import posted_file

MAX_DEPTH = 32  # levels of nested objects and lists in a JSON body
INTEGER_TEXT = re.compile(r"-?[0-9]+")
MAX_DIGITS = 20  # more digits than any 64-bit number: out of range whatever the schema says

_TYPE_MESSAGES = {
    "integer": _l("Must be a whole number."), "number": _l("Must be a number."),
    "string": _l("Must be text."), "boolean": _l("Must be true or false."),
    "object": _l("Must be an object."), "array": _l("Must be a list."),
}


def check_request(op):
    """Raise the contract's 400 / 422 for input ``op`` does not accept."""
    if op.query:
        _check_query(op)
    if op.form is not None:
        _check_form(op)
    if op.body is not None:
        g.api_json = _check_json(op)


# --- query string and multipart fields ------------------------------------------------

def _is_integer(schema):
    return schema.get("type") == "integer"


def _from_text(schema, raw):
    """(value, message): the text as the schema's type, or why it is not."""
    fault = _text_fault(raw)
    if fault is not None:
        return None, fault
    if not _is_integer(schema):
        return raw, None
    if not INTEGER_TEXT.fullmatch(raw):
        return None, _TYPE_MESSAGES["integer"]
    if len(raw.lstrip("-")) > MAX_DIGITS:
        return None, _range_message(schema)
    return int(raw), None


def _check_query(op):
    errors = {}
    for param in op.query:
        raw = request.args.get(param.name)
        if raw in (None, ""):
            if param.required:
                errors[param.name] = _("This field is required.")
            continue
        value, message = _from_text(param.schema, raw)
        if message is None:
            message = _schema_messages(op, op.query_validators[param.name], value,
                                       name=param.name).get(param.name)
        if message is not None:
            errors[param.name] = message
    if errors:
        raise ApiError(400, _summary(errors), errors)


def _check_form(op):
    """Multipart fields: text converted by the schema's types, files present."""
    properties = op.form.get("properties", {})
    instance, errors = {}, {}
    for name in request.files:
        schema = properties.get(name, {})
        if schema.get("format") != "binary":
            instance[name] = ""  # reported below as an unknown field
        elif posted_file(name) is not None:  # a readable 413 when too large
            instance[name] = ""
        for upload in request.files.getlist(name):  # a file's name is text too
            message = _text_fault(upload.filename or "")
            if message is not None:
                errors.setdefault(name, message)
    for name in request.form:
        schema = properties.get(name, {})
        value, message = _from_text(schema, request.form.get(name))
        if message is not None:
            errors[name] = message
        else:
            instance[name] = value
    errors = {**_schema_messages(op, op.form_validator, instance), **errors}
    if errors:
        raise ApiError(400, _summary(errors), errors)


# --- JSON bodies ------------------------------------------------------------------------

def _not_an_object():
    return ApiError(400, _("The body must be a JSON object."))


def _check_json(op):
    """The body as a dict, or None for an optional body that is absent."""
    data = request.get_data(cache=True)
    if not data:
        if op.body_required:
            raise _not_an_object()
        return None
    if not request.is_json:
        raise _not_an_object()
    try:
        body = json.loads(data)
    except RecursionError:
        raise _too_deep()
    except ValueError:  # not JSON, not UTF-8, or a number of more than 4300 digits
        raise _not_an_object()
    if not isinstance(body, dict):
        raise _not_an_object()
    text_errors = _scan(body)  # first: it bounds the depth the schema check recurses into
    errors = {**_schema_messages(op, op.body_validator, body), **text_errors}
    if errors:
        raise ValidationFailed(errors, _summary(errors))
    return body


def _too_deep():
    return ApiError(400, _("The JSON body is nested more than %(n)s levels deep.", n=MAX_DEPTH))


def _scan(body):
    """Walk the body without recursion: its depth, and text the databases refuse.

    Returns {field: message} for faulty text; raises the 400 when too deep.
    """
    errors = {}
    stack = [(body, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise _too_deep()
            for key, item in value.items():
                message = _text_fault(key)
                if message is not None:  # named by its object: the key itself is unprintable
                    errors.setdefault(path or "body", message)
                else:
                    stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise _too_deep()
            stack.extend((item, path, depth + 1) for item in value)
        elif isinstance(value, str):
            message = _text_fault(value)
            if message is not None:
                errors.setdefault(path, message)
    return errors


def _text_fault(text):
    if "\x00" in text:
        return _("Must not contain the NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _("Must be valid Unicode text.")
    return None


# --- messages -------------------------------------------------------------------------------

def _field(error, name=None):
    """Dotted path of the property at fault; list positions are left out."""
    parts = [str(p) for p in error.absolute_path if not isinstance(p, int)]
    if name is not None:
        parts.insert(0, name)
    return ".".join(parts)


def _range_message(schema):
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return _("Must be from %(low)s to %(high)s.", low=low, high=high)
    if low is not None:
        return _("Must be at least %(n)s.", n=low)
    if high is not None:
        return _("Must be at most %(n)s.", n=high)
    return _("Is out of range.")


def _message(error):
    keyword, schema = error.validator, error.schema
    if keyword == "type":
        expected = error.validator_value
        expected = expected if isinstance(expected, str) else expected[0]
        return str(_TYPE_MESSAGES.get(expected, _("Has the wrong type.")))
    if keyword in ("enum", "const"):
        values = error.validator_value if keyword == "enum" else [error.validator_value]
        return _("Must be one of: %(names)s.", names=", ".join(str(v) for v in values))
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _range_message(schema)
    if keyword == "minLength":
        if error.validator_value == 1:
            return _("Must not be empty.")
        return _("At least %(n)s characters.", n=error.validator_value)
    if keyword == "maxLength":
        return _("At most %(n)s characters.", n=error.validator_value)
    if keyword == "minItems":
        if error.validator_value == 1:
            return _("Must not be empty.")
        return _("At least %(n)s items.", n=error.validator_value)
    if keyword == "maxItems":
        return _("At most %(n)s items.", n=error.validator_value)
    return _("Is not valid.")


def _schema_messages(op, validator, instance, name=None):
    """{field: message} for every fault, the first one per field."""
    errors = {}
    for error in validator.iter_errors(instance):
        base = _field(error, name)
        if error.validator == "required":
            for key in error.validator_value:
                if isinstance(error.instance, dict) and key not in error.instance:
                    field = f"{base}.{key}" if base else key
                    errors.setdefault(field, _custom(op, field, "required")
                                      or _("This field is required."))
        elif error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    field = f"{base}.{key}" if base else str(key)
                    errors.setdefault(field, _("Unknown field."))
        else:
            field = base or "body"
            errors.setdefault(field, _custom(op, field, error.validator) or _message(error))
    return errors


def _custom(op, field, keyword):
    message = op.messages.get((field, keyword))
    return str(message) if message is not None else None


def _summary(errors):
    """The ``error`` text: the one fault, or the names of the fields at fault."""
    if all(message == _("Unknown field.") for message in errors.values()):
        return _("Unknown fields: %(names)s.", names=", ".join(sorted(errors)))
    if len(errors) == 1:
        [(field, message)] = errors.items()
        return f"{field}: {message}"
    return _("These fields are not valid: %(names)s.", names=", ".join(sorted(errors)))
