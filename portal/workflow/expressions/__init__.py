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

The parts: ``parser`` (the text read into Python source, or refused), ``evaluator`` (the parsed tree checked
against the language and turned into closures), ``values`` (how values compare) and ``condition``
(``Condition``, ``ExpressionRefused`` and the limits); ``compile_condition`` here puts them together. The BPMN
loader checks conditions with it (``portal.workflow.loading.checks``) and the engine evaluates them
(``portal.workflow.engine.runtime``); it imports neither of them.
"""
import ast
import functools

from flask_babel import gettext as _

from portal.workflow.expressions.condition import (ACTION, MAX_DEPTH, MAX_LENGTH, MAX_NESTING, Condition,
                                                   ExpressionRefused)
from portal.workflow.expressions.evaluator import Builder
from portal.workflow.expressions.parser import to_python, unwrap

__all__ = ["ACTION", "MAX_DEPTH", "MAX_LENGTH", "MAX_NESTING", "Condition", "ExpressionRefused",
           "compile_condition"]


@functools.lru_cache(maxsize=1024)
def compile_condition(text):
    """Check ``text`` and return its ``Condition``; raise ``ExpressionRefused``."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TypeError("a condition is text")
    if len(text.strip()) > MAX_LENGTH:
        raise ExpressionRefused(text, _("longer than %(n)s characters", n=MAX_LENGTH))
    body = unwrap(text)
    if not body:
        raise ExpressionRefused(text, _("the expression is empty"))
    source = to_python(text, body)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExpressionRefused(text, _("this is not a valid condition")) from None
    builder = Builder(text)
    test = builder.condition(tree.body, 1)
    return Condition(text, builder.names, test)
