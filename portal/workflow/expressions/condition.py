"""The public types of the condition language: ``Condition`` (a checked condition) and ``ExpressionRefused``
(why a text is not one), with the limits on hostile input. The rules are in ``portal.workflow.expressions``."""
from flask_babel import gettext as _

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
