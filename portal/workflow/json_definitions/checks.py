"""A JSON process definition file (contract section 5): its text read into data, and the data checked.

``read_file(content)`` turns an uploaded file's bytes into the definition's data or refuses the file as a
whole (not UTF-8, not JSON, nested too deep); ``check_definition(data)`` returns the problems of the data,
keyed by where they are. Field lists pass the checks shared with BPMN forms (``portal.workflow.fields``).
"""
import json

from flask_babel import gettext as _

from portal.errors import ValidationFailed
from portal.workflow.fields import FIELD_TYPES, check_fields

# Levels of nested objects and lists a JSON file may hold, as in the API's bodies: a definition needs
# six; Python's parser (and the encoders that store and show a definition) recurse once per level and
# raise RecursionError, a 500, on files such as "[[[[...".
MAX_DEPTH = 32


def check_definition(data):
    """Return the problems of a definition as {where: message}; empty when valid."""
    problems = {}
    if not isinstance(data, dict):
        return {"definition": "must be a JSON object"}
    for name in ("key", "name"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            problems[name] = "required"
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        problems["nodes"] = "at least one node is required"
        return problems
    keys = set()
    for i, node in enumerate(nodes):
        at = f"nodes[{i}]"
        if not isinstance(node, dict):
            problems[at] = "must be an object"
            continue
        if not isinstance(node.get("key"), str) or not node["key"]:
            problems[at + ".key"] = "required"
        elif node["key"] in keys:
            problems[at + ".key"] = f"duplicate node key {node['key']!r}"
        keys.add(node.get("key"))
        assignee = node.get("assignee", "")
        kind, _sep, name = str(assignee).partition(":")
        if kind not in ("user", "role") or not name:
            problems[at + ".assignee"] = "must be user:NAME or role:NAME"
        check_fields(node.get("fields", []), at + ".fields", FIELD_TYPES, problems)
    return problems


def read_file(content):
    """The data of a JSON file (bytes, UTF-8 with or without a BOM); ValidationFailed keyed ``file`` when the
    file is not UTF-8, not JSON, or nests objects and lists more than ``MAX_DEPTH`` levels."""
    too_deep = ValidationFailed({"file": _("The file is nested more than %(n)s levels deep.", n=MAX_DEPTH)},
                                message=_("The process definition is invalid."))
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except RecursionError:
        raise too_deep from None
    except UnicodeDecodeError:
        raise ValidationFailed({"file": _("The file is not UTF-8 text.")},
                               message=_("The process definition is invalid.")) from None
    except ValueError as exc:
        raise ValidationFailed({"file": _("The file is not valid JSON: %(detail)s", detail=str(exc))},
                               message=_("The process definition is invalid.")) from None
    if _nested_beyond(data, MAX_DEPTH):
        raise too_deep
    return data


def _nested_beyond(data, limit):
    """Whether ``data`` nests objects and lists more than ``limit`` levels (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return False
