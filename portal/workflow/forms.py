"""Server-side validation of a node's form against its field definitions.

``validate_form(fields, data)`` returns ``(cleaned, errors)`` where errors maps
each faulty field key to a readable message: a ``portal.messages.Message``,
text in the current locale that also keeps its msgid and params, so a batch
item can store it and show it later in its reader's language. Values arrive
as JSON or as text typed into a page or a spreadsheet, so numbers, dates and booleans are also
accepted in their usual text forms. Numbers have at most 15 digits before the
decimal point; more than 10 decimals are rounded to 10.
"""
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

# ``_`` makes Messages here (see the module docstring); pybabel extracts these strings as usual.
from portal.messages import Message, joined, message as _

TRUE_WORDS = {"true", "1", "yes", "y", "是", "真", "on"}
FALSE_WORDS = {"false", "0", "no", "n", "否", "假", "off"}


def is_blank(value):
    return value is None or (isinstance(value, str) and value.strip() == "") or value == []


# Numbers people type (and JSON numbers) are held to a documented range before
# any arithmetic: Decimal accepts "1e1000000", and turning that into an int
# takes minutes. Up to 15 digits before the point is exact in a float too.
MAX_NUMBER_TEXT = 40
MAX_INTEGER_DIGITS = 15
MAX_DECIMALS = 10
_DECIMALS = Decimal(1).scaleb(-MAX_DECIMALS)


def _number(value, field):
    if isinstance(value, bool):
        raise ValueError(_("Enter a number."))
    text = str(value).strip().replace(",", "")
    if len(text) > MAX_NUMBER_TEXT:
        raise ValueError(_("Enter a number of at most %(n)s digits before the decimal point.",
                           n=MAX_INTEGER_DIGITS))
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(_("Enter a number."))
    if not number.is_finite():
        raise ValueError(_("Enter a number."))
    if number and number.adjusted() >= MAX_INTEGER_DIGITS:
        raise ValueError(_("Enter a number of at most %(n)s digits before the decimal point.",
                           n=MAX_INTEGER_DIGITS))
    if number.as_tuple().exponent < -MAX_DECIMALS:
        number = number.quantize(_DECIMALS)  # more decimals than anyone means: rounded
    if field.get("min") is not None and number < Decimal(str(field["min"])):
        raise ValueError(_("Must be at least %(min)s.", min=field["min"]))
    if field.get("max") is not None and number > Decimal(str(field["max"])):
        raise ValueError(_("Must be at most %(max)s.", max=field["max"]))
    return int(number) if number == number.to_integral_value() else float(number)


def _date(value):
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y-%m-%d %H:%M:%S", "%Y年%m月%d日"):
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError(_("Enter a date as YYYY-MM-DD."))


def _boolean(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(_("Choose yes or no."))


def _text(value, field):
    text = str(value) if not isinstance(value, str) else value
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))  # a code typed into a spreadsheet cell
    limit = field.get("max_length")
    if limit is not None and len(text) > limit:
        raise ValueError(_("At most %(n)s characters.", n=limit))
    least = field.get("min_length")
    if least is not None and len(text.strip()) < least:
        raise ValueError(_("At least %(n)s characters.", n=least))
    return text


def _select(value, field):
    options = [str(o) for o in field.get("options", [])]
    text = str(value).strip()
    if text not in options:
        raise ValueError(_("Choose one of: %(options)s.", options=", ".join(options)))
    return text


def _table(value, field):
    if not isinstance(value, list):
        raise ValueError(_("Enter a list of rows."))
    rows, problems = [], []
    for number, row in enumerate(value, start=1):
        if not isinstance(row, dict):
            problems.append(_("Row %(n)s: not a row.", n=number))
            continue
        cleaned, errors = validate_form(field.get("columns", []), row)
        rows.append(cleaned)
        # The column's label as the definition writes it: definition text, not the portal's.
        problems.extend(_("Row %(n)s: %(label)s: %(message)s", n=number,
                          label=_label(field.get("columns", []), key), message=message)
                        for key, message in errors.items())
    if problems:
        raise ValueError(joined(problems))
    return rows


def _label(fields, key):
    for f in fields:
        if f["key"] == key:
            return f.get("label", key)
    return key


def clean_value(field, value):
    """Convert one present value, raising ValueError with a readable message."""
    kind = field.get("type", "text")
    if kind == "number":
        return _number(value, field)
    if kind == "date":
        return _date(value)
    if kind == "boolean":
        return _boolean(value)
    if kind == "select":
        return _select(value, field)
    if kind == "table":
        return _table(value, field)
    return _text(value, field)


def own_values(fields, data):
    """The values a task holds of its own for ``fields``: its instance's variables of those keys
    (what the task page shows before anyone types), blanks left out."""
    data = data if isinstance(data, dict) else {}
    return {f["key"]: data[f["key"]] for f in fields if not is_blank(data.get(f["key"]))}


def with_own_values(fields, data, form):
    """``form`` over the task's own values (``data``: its instance's variables): a field the form
    leaves out, or holds blank, keeps the task's value. What a batch item is decided with."""
    given = {key: value for key, value in (form if isinstance(form, dict) else {}).items()
             if not is_blank(value)}
    return {**own_values(fields, data), **given}


def validate_form(fields, data, *, enforce_required=True):
    """Check ``data`` against ``fields``; unknown keys are dropped, and so are values of read-only
    fields (BPMN ``readonly``: shown from the instance's variables, never set by a decision)."""
    data = data if isinstance(data, dict) else {}
    cleaned, errors = {}, {}
    for field in fields:
        key = field["key"]
        if field.get("readonly"):
            continue
        value = data.get(key)
        if is_blank(value):
            if field.get("required") and enforce_required:
                errors[key] = _("This field is required.")
            continue
        try:
            cleaned[key] = clean_value(field, value)
        except ValueError as exc:
            problem = exc.args[0] if exc.args else None
            errors[key] = problem if isinstance(problem, Message) else str(exc)
    return cleaned, errors
