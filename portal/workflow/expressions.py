"""Conditions on BPMN sequence flows, checked when a process is loaded and
evaluated by the portal's own walker: never ``eval``, never a script engine.

``compile_condition(text)`` returns a ``Condition`` or raises
``ExpressionRefused`` whose ``message`` quotes the expression and says what is
not allowed, so a loader can name the element too. A ``Condition`` has
``text`` (as written), ``names`` (the variables it reads), ``tests_action``
(whether it reads ``action``) and ``evaluate(variables) -> bool``. Compiled
conditions are immutable and cached by text, so an engine adapter may call
``compile_condition`` for every evaluation.

Accepted text: Camunda's ``${...}`` or ``#{...}``, or the bare expression,
with any surrounding whitespace. The language is this and nothing else:

- names: identifiers, Unicode letters included (``金额 > 100``), written in
  NFKC form (so a name reads exactly the variable of that key); a name may not
  start with ``_``;
- numbers: decimal integers and decimals (``10000``, ``0.5``, ``1e6``), a
  leading ``-`` on a number; strings in ``'...'`` or ``"..."`` where a
  backslash escapes the next character (``\\'``, ``\\"``, ``\\\\``); two
  strings may not follow each other; ``true``/``True``, ``false``/``False``,
  ``null``/``None``;
- comparisons ``== != < <= > >=``, chained as in ``1 <= level <= 3``;
  ``x in [1, 2, 'x']`` and ``not in`` over a list of literals only;
- ``&& || !`` and ``and or not``; parentheses.

Refused: calls, attributes, subscripts and slices, lambdas, comprehensions,
``:=``, f-strings and other string prefixes, ``is``, conditional expressions,
tuples, dict and set literals, unpacking, comments. Arithmetic (``+ - * / %``
and the rest) is refused too, on purpose: the issue's list does not include it,
and a computed value (``amount * 2 > limit``) belongs in a form field of its
own. A Camunda ``completionCondition`` therefore compares counts
(``nrOfCompletedInstances >= 2``), not ratios. Hostile input is refused before Python's parser sees it:
at most ``MAX_LENGTH`` characters and ``MAX_DEPTH`` levels of brackets; after
parsing, at most ``MAX_NESTING`` nested operators (``!!!!...x``).

Evaluation, chosen so a condition never raises on the data it meets:

- an unknown variable is ``null``: ``amount > 10000`` is false without
  ``amount``, and ``amount != 5`` is true (Camunda would raise instead);
- truth is strict: only the boolean ``true`` is true in ``&&``, ``||``, ``!``
  and as the result; ``null``, numbers and strings count as false, so ``!x``
  is true when ``x`` is missing. A literal number, string or null where a
  condition is expected (``${1}``, ``x && 'y'``) is refused at load;
- numbers compare by value whatever their type: ints, floats and Decimals
  (a float counts as the decimal it prints as, so ``0.1 == 0.1`` holds
  between a float and ``Decimal('0.1')``); NaN equals nothing and is in no
  order;
- booleans are not numbers (``true == 1`` is false); strings of digits stay
  strings (``'10' == 10`` is false; form validation already turns number fields
  into numbers); values of different kinds are never equal and never ordered:
  ``==`` and every ordering is false, ``!=`` is true; ``null`` equals only
  ``null`` and is never ordered;
- strings order by code point (ISO dates from date fields order correctly);
  other values (lists, ``date`` objects) compare with values of the same type
  when Python can, and are otherwise unequal and unordered;
- ``x in [...]`` is true when ``x == item`` (as above) for one of the items.
"""
import ast
import functools
import math
import operator
import re
import unicodedata
from decimal import Decimal

from flask_babel import gettext as _, lazy_gettext as _l

MAX_LENGTH = 1000
MAX_DEPTH = 50
MAX_NESTING = 2 * MAX_DEPTH
QUOTE_CHARS = 60  # how much of a long expression a message quotes

ACTION = "action"


class ExpressionRefused(ValueError):
    """The text is not a condition the portal evaluates; ``message`` says why."""

    def __init__(self, expression, reason):
        self.expression = expression
        self.reason = str(reason)
        self.message = _('"%(expression)s": %(reason)s',
                         expression=_quote(expression), reason=self.reason)
        super().__init__(self.message)


def _quote(expression):
    # One line, and not all of a 10,000-character hostile text.
    text = " ".join(str(expression or "").split())
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


class Condition:
    """A checked condition; immutable, safe to share between threads."""

    __slots__ = ("text", "names", "_test")

    def __init__(self, text, names, test):
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "names", frozenset(names))
        object.__setattr__(self, "_test", test)

    def __setattr__(self, name, value):
        raise AttributeError("a Condition is immutable")

    @property
    def tests_action(self):
        return ACTION in self.names

    def evaluate(self, variables):
        """True when the condition holds over ``variables`` (a mapping)."""
        return self._test(variables) is True

    def __repr__(self):
        return f"Condition({self.text!r})"


# --- from text to Python source ----------------------------------------------------

# Numbers in decimal only: hex, underscores and complex literals are refused.
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMBER_LIKE = re.compile(r"[\w.]+")
_WORD = re.compile(r"\w+")
# Longest first; the multi-character ones the subset refuses are still read as
# one operator so the refusal names them (``**`` is arithmetic, ``:=`` assignment).
_OPERATORS = ("&&", "||", "==", "!=", "<=", ">=", "**", "//", ":=", "<<", ">>",
              "(", ")", "[", "]", "{", "}", ",", ".", "<", ">", "!", "+", "-", "*", "/",
              "%", "&", "|", "^", "~", "@", ":", ";", "=")
_TRANSLATED = {"&&": "and", "||": "or", "!": "not"}
_LITERAL_WORDS = {"true": "True", "false": "False", "null": "None"}
_OPENING, _CLOSING = "([{", ")]}"
_PREFIXES = {"r", "u", "b", "f", "br", "rb", "fr", "rf"}  # Python's, any case


def _unwrap(text):
    body = text.strip()
    if body[:2] in ("${", "#{"):
        if not body.endswith("}"):
            raise ExpressionRefused(text, _("the %(opening)s is not closed with }",
                                            opening=body[:2]))
        body = body[2:-1].strip()
    return body


def _read_string(expression, text, start):
    """The string literal opening at ``start``: (its value, the index after it)."""
    quote, i, parts = text[start], start + 1, []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            parts.append(text[i + 1])  # JUEL's escapes: the next character as is
            i += 2
        elif char == quote:
            return "".join(parts), i + 1
        else:
            parts.append(char)
            i += 1
    raise ExpressionRefused(expression, _("a string is not closed"))


def _check_word(expression, word):
    if not word.isidentifier():
        raise ExpressionRefused(expression, _("%(word)s is not a valid name", word=word))
    if unicodedata.normalize("NFKC", word) != word:
        # Python would read it as its NFKC form (ａ as a): a different variable.
        raise ExpressionRefused(expression, _("write the name %(word)s in plain characters",
                                              word=word))
    if word.startswith("_"):
        raise ExpressionRefused(expression, _("names starting with _ are not allowed"))


def _to_python(expression, body):
    """Python source for ``body``, or a refusal. Strings are re-written by
    ``repr`` so Python sees exactly the value read here, and ``&&`` inside a
    string is never taken for an operator."""
    out, depth, previous, i = [], 0, None, 0
    while i < len(body):
        char = body[i]
        if char.isspace():  # newlines and the ideographic space too
            i += 1
            continue
        if char in "'\"":
            if previous == "string":  # also catches ''' and """
                raise ExpressionRefused(expression, _("two strings may not follow each other"))
            value, i = _read_string(expression, body, i)
            out.append(repr(value))
            previous = "string"
            continue
        number = _NUMBER.match(body, i)
        if number:
            end = number.end()
            if end < len(body) and (body[end].isalnum() or body[end] in "_."):
                raise ExpressionRefused(expression, _("%(word)s is not a valid number",
                                                      word=_NUMBER_LIKE.match(body, i).group()))
            out.append(number.group())
            previous, i = "number", end
            continue
        word = _WORD.match(body, i)
        if word:
            i = word.end()
            if i < len(body) and body[i] in "'\"" and word.group().lower() in _PREFIXES:
                if "f" in word.group().lower():
                    raise ExpressionRefused(expression, _("f-strings are not allowed"))
                raise ExpressionRefused(expression, _("string prefixes are not allowed"))
            _check_word(expression, word.group())
            out.append(_LITERAL_WORDS.get(word.group(), word.group()))
            previous = "word"
            continue
        op = next((op for op in _OPERATORS if body.startswith(op, i)), None)
        if op is None:
            raise ExpressionRefused(expression, _('unexpected character "%(char)s"', char=char))
        if op == "=":
            raise ExpressionRefused(expression, _("a single = is not allowed; compare with =="))
        if op in _OPENING:
            depth += 1
            if depth > MAX_DEPTH:
                raise ExpressionRefused(expression, _("more than %(n)s levels of brackets",
                                                      n=MAX_DEPTH))
        elif op in _CLOSING:
            depth -= 1
        out.append(_TRANSLATED.get(op, op))
        previous, i = "op", i + len(op)
    return " ".join(out)


# --- checking the tree and building the test ----------------------------------------

_REFUSED = (
    (ast.Call, _l("calls are not allowed")),
    (ast.Attribute, _l("attributes are not allowed")),
    (ast.Subscript, _l("subscripts and slices are not allowed")),
    (ast.Lambda, _l("lambdas are not allowed")),
    ((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp),
     _l("comprehensions are not allowed")),
    (ast.NamedExpr, _l("assignments (:=) are not allowed")),
    ((ast.JoinedStr, ast.FormattedValue), _l("f-strings are not allowed")),
    (ast.Starred, _l("unpacking (*) is not allowed")),
    ((ast.Dict, ast.Set), _l("dict and set literals are not allowed; write a list [...]")),
    (ast.Tuple, _l("tuples are not allowed; write a list [...]")),
    (ast.IfExp, _l("conditional expressions are not allowed")),
    (ast.List, _l("a list is allowed only right after in or not in")),
)
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult,
               ast.UAdd, ast.USub)


def _specific_refusal(node):
    """What is wrong with a construct outside the subset, when it has a name."""
    for kinds, reason in _REFUSED:
        if isinstance(node, kinds):
            return str(reason)
    if isinstance(node, ast.BinOp) or (isinstance(node, ast.UnaryOp)
                                       and not isinstance(node.op, ast.Not)):
        if isinstance(node.op, _ARITHMETIC):
            return _("arithmetic is not allowed")
        return _("bitwise operators are not allowed")
    return None


def _refusal(node):
    return _specific_refusal(node) or _("%(what)s is not allowed", what=type(node).__name__)


class _Builder:
    """Walks a parsed tree once: refuses what is outside the subset and returns
    a test function ``test(variables) -> value`` made of closures."""

    def __init__(self, expression):
        self.expression = expression
        self.names = set()

    def refuse(self, reason):
        raise ExpressionRefused(self.expression, reason)

    def condition(self, node, depth):
        """Where a truth value is expected: the whole, and operands of && || !."""
        literal = self.literal(node)
        if literal is not None and not isinstance(literal[0], bool):
            self.refuse(_("a number, string or null is not a condition"))
        return self.value(node, depth)

    def literal(self, node):
        """``(value,)`` for a literal (a negative number included), else None."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            # Only directly on a number: "--5" is arithmetic, and no deep recursion here.
            inner = self.literal(node.operand) if isinstance(node.operand, ast.Constant) else None
            if inner is not None and _kind(inner[0]) == "number":
                return (-inner[0],)
            return None
        if not isinstance(node, ast.Constant):
            return None
        value = node.value
        if value is None or isinstance(value, (bool, int, str)):
            return (value,)
        if isinstance(value, float):
            if not math.isfinite(value):
                self.refuse(_("the number is too large"))
            return (value,)
        self.refuse(_("this constant is not allowed"))

    def value(self, node, depth):
        if depth > MAX_NESTING:
            self.refuse(_("nested more than %(n)s levels deep", n=MAX_NESTING))
        literal = self.literal(node)
        if literal is not None:
            constant = literal[0]
            return lambda variables: constant
        if isinstance(node, ast.Name):
            _check_word(self.expression, node.id)
            self.names.add(node.id)
            name = node.id
            return lambda variables: variables.get(name)
        if isinstance(node, ast.BoolOp):
            parts = tuple(self.condition(part, depth + 1) for part in node.values)
            if isinstance(node.op, ast.And):
                return lambda variables: all(part(variables) is True for part in parts)
            return lambda variables: any(part(variables) is True for part in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            operand = self.condition(node.operand, depth + 1)
            return lambda variables: operand(variables) is not True
        if isinstance(node, ast.Compare):
            return self.compare(node, depth)
        self.refuse(_refusal(node))

    def compare(self, node, depth):
        left = self.value(node.left, depth + 1)
        steps = []
        last = len(node.ops) - 1
        for index, (op, right) in enumerate(zip(node.ops, node.comparators)):
            test = _COMPARISONS.get(type(op))
            if test is None:
                self.refuse(_("is and is not are not allowed; compare with == or !="))
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, ast.List) and _specific_refusal(right):
                    self.refuse(_specific_refusal(right))  # "x in (1, 2)": write a list
                if not isinstance(right, ast.List) or index != last:
                    self.refuse(_("in and not in need a list [...] of literals on their right"))
                items = tuple(self.list_item(item) for item in right.elts)
                steps.append((test, lambda variables, items=items: items))
            else:
                steps.append((test, self.value(right, depth + 1)))

        def chain(variables):
            # Python's chaining: a < b < c is a < b and b < c, each operand read once.
            current = left(variables)
            for test, right in steps:
                following = right(variables)
                if not test(current, following):
                    return False
                current = following
            return True
        return chain

    def list_item(self, node):
        literal = self.literal(node)
        if literal is None:
            if isinstance(node, ast.List) or not _specific_refusal(node):
                self.refuse(_("a list after in may hold only literals"))
            self.refuse(_specific_refusal(node))
        return literal[0]


# --- comparing values ------------------------------------------------------------

def _kind(value):
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
    kind = _kind(a)
    if kind != _kind(b):
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
        kind = _kind(a)
        if kind != _kind(b) or kind in ("null", "boolean"):
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


_COMPARISONS = {
    ast.Eq: _equal,
    ast.NotEq: lambda a, b: not _equal(a, b),
    ast.Lt: _ordered(operator.lt),
    ast.LtE: _ordered(operator.le),
    ast.Gt: _ordered(operator.gt),
    ast.GtE: _ordered(operator.ge),
    ast.In: _in,
    ast.NotIn: lambda value, items: not _in(value, items),
}


# --- the entry point ---------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def compile_condition(text):
    """Check ``text`` and return its ``Condition``; raise ``ExpressionRefused``."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TypeError("a condition is text")
    if len(text.strip()) > MAX_LENGTH:
        raise ExpressionRefused(text, _("longer than %(n)s characters", n=MAX_LENGTH))
    body = _unwrap(text)
    if not body:
        raise ExpressionRefused(text, _("the expression is empty"))
    source = _to_python(text, body)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExpressionRefused(text, _("this is not a valid condition")) from None
    builder = _Builder(text)
    test = builder.condition(tree.body, 1)
    return Condition(text, builder.names, test)
