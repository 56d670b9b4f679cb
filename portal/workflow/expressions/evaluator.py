"""The parsed tree of a condition checked against the language and turned into its test: a function
``test(variables) -> value`` made of closures, never ``eval``. Values compare as ``values`` says.
"""
import ast
import math

from flask_babel import gettext as _, lazy_gettext as _l

from portal.workflow.expressions.condition import MAX_NESTING, ExpressionRefused
from portal.workflow.expressions.parser import check_word
from portal.workflow.expressions.values import COMPARISONS, kind_of

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


class Builder:
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
            if inner is not None and kind_of(inner[0]) == "number":
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
            check_word(self.expression, node.id)
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
            test = COMPARISONS.get(type(op))
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
