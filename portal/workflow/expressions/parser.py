"""From a condition's text to Python source, or a refusal: the tokens of the language read one by one
(``portal.workflow.expressions`` has the rules). Python's parser then reads the source
(``portal.workflow.expressions.compile_condition``) and ``evaluator`` checks the tree.
"""
import re
import unicodedata

from flask_babel import gettext as _

from portal.workflow.expressions.condition import MAX_DEPTH, ExpressionRefused

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


def unwrap(text):
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


def check_word(expression, word):
    if not word.isidentifier():
        raise ExpressionRefused(expression, _("%(word)s is not a valid name", word=word))
    if unicodedata.normalize("NFKC", word) != word:
        # Python would read it as its NFKC form (ａ as a): a different variable.
        raise ExpressionRefused(expression, _("write the name %(word)s in plain characters",
                                              word=word))
    if word.startswith("_"):
        raise ExpressionRefused(expression, _("names starting with _ are not allowed"))


def to_python(expression, body):
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
            check_word(expression, word.group())
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
