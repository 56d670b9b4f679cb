"""Turning cell values, as python-calamine returns them, into form input.

Files saved by Excel, LibreOffice and WPS differ: a date may be a date, a
serial number or text; a number may be stored as text; an empty cell is
``""``. Formula cells arrive as the value last calculated by the spreadsheet
(calamine never evaluates). Validation itself stays in
``portal.workflow.forms``; this module only undoes spreadsheet encodings.
"""
import re
from datetime import date, datetime, time, timedelta

EXCEL_EPOCH = datetime(1899, 12, 30)
LAST_SERIAL = 2958465  # 9999-12-31


def is_blank(value):
    return value is None or (isinstance(value, str) and value.strip() == "")


def plain(value):
    """``""`` becomes None; everything else as calamine gave it."""
    return None if is_blank(value) else value


WHOLE_NUMBER_TEXT = re.compile(r"[0-9]{1,18}")   # ASCII digits; int() takes "²" and "١"
LARGEST_WHOLE = 10**18                            # beyond any id a row can have


def whole_number(value):
    """An int from 12, 12.0 or " 12 ", else None (also for numbers beyond 10**18)."""
    if isinstance(value, bool) or is_blank(value):
        return None
    if isinstance(value, float):
        if not value.is_integer() or abs(value) >= LARGEST_WHOLE:
            return None
        value = int(value)
    if isinstance(value, int):
        return value if abs(value) < LARGEST_WHOLE else None
    text = str(value).strip()
    if WHOLE_NUMBER_TEXT.fullmatch(text):
        return int(text)
    if len(text) > 32:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return whole_number(number) if number == number else None


def serial_to_date(serial):
    return (EXCEL_EPOCH + timedelta(days=int(serial))).date()


def field_value(field_type, value):
    """The value to validate for a field of ``field_type``."""
    value = plain(value)
    if value is None:
        return None
    if field_type == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, str):
            try:   # the common ISO text, fast; other text is left to validation
                return date.fromisoformat(value.strip())
            except ValueError:
                return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and 1 <= value <= LAST_SERIAL:
            return serial_to_date(value)
    if isinstance(value, (time, timedelta)):
        return str(value)
    return value


def text_value(value):
    """Comments: text, with whole numbers shown without ".0"."""
    value = plain(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def jsonable(value):
    """What a raw (possibly invalid) value is stored as on a batch item."""
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
