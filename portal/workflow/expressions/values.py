"""How a condition compares values at run time, chosen so that it never raises on the data it meets: numbers
by value whatever their type, values of different kinds never equal and never ordered (the rules are listed in
``portal.workflow.expressions``).
"""
import ast
import operator
from decimal import Decimal


def kind_of(value):
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: True is an int in Python, not here
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value)


def _decimal(value):
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))  # the decimal it prints as: 0.1, not 0.1000000000000000055
    return Decimal(value)


def _numbers(a, b):
    a, b = _decimal(a), _decimal(b)
    if a.is_nan() or b.is_nan():  # comparing a NaN Decimal raises; here it is unordered
        return None
    return a, b


def _equal(a, b):
    kind = kind_of(a)
    if kind != kind_of(b):
        return False
    if kind == "number":
        pair = _numbers(a, b)
        return pair is not None and pair[0] == pair[1]
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _ordered(compare):
    def test(a, b):
        kind = kind_of(a)
        if kind != kind_of(b) or kind in ("null", "boolean"):
            return False
        if kind == "number":
            pair = _numbers(a, b)
            return pair is not None and compare(*pair)
        try:
            return bool(compare(a, b))
        except (TypeError, ValueError):
            return False
    return test


def _in(value, items):
    return any(_equal(value, item) for item in items)


COMPARISONS = {
    ast.Eq: _equal,
    ast.NotEq: lambda a, b: not _equal(a, b),
    ast.Lt: _ordered(operator.lt),
    ast.LtE: _ordered(operator.le),
    ast.Gt: _ordered(operator.gt),
    ast.GtE: _ordered(operator.ge),
    ast.In: _in,
    ast.NotIn: lambda value, items: not _in(value, items),
}
