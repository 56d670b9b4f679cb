"""Process definitions (contract (docs/contract.md) section 5): checking a JSON definition and
loading it as a new version when it changed."""
import hashlib
import json

from portal.extensions import db
from portal.models import Node, ProcessDefinition
from portal.errors import ValidationFailed
from portal.workflow.forms import FIELD_TYPES

COLUMN_TYPES = ("text", "number", "date", "select", "boolean")
# Names the task form and the templates use for themselves.
RESERVED_KEYS = {"action", "comment", "csrf_token", "task_id", "title", "error"}


def _check_fields(fields, where, allowed, problems):
    if not isinstance(fields, list):
        problems[where] = "fields must be a list"
        return
    seen = set()
    for i, field in enumerate(fields):
        at = f"{where}[{i}]"
        if not isinstance(field, dict) or not isinstance(field.get("key"), str) or not field["key"]:
            problems[at] = "each field needs a key"
            continue
        if field["key"] in seen:
            problems[at] = f"duplicate field key {field['key']!r}"
        if field["key"] in RESERVED_KEYS:
            problems[at] = f"the key {field['key']!r} is reserved"
        seen.add(field["key"])
        kind = field.get("type", "text")
        if kind not in allowed:
            problems[at] = f"unknown type {kind!r}"
        if kind == "select" and not (isinstance(field.get("options"), list) and field["options"]):
            problems[at] = "a select field needs options"
        if kind == "table":
            _check_fields(field.get("columns"), at + ".columns", COLUMN_TYPES, problems)


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
        kind, _, name = str(assignee).partition(":")
        if kind not in ("user", "role") or not name:
            problems[at + ".assignee"] = "must be user:NAME or role:NAME"
        _check_fields(node.get("fields", []), at + ".fields", FIELD_TYPES, problems)
    return problems


def _digest(data):
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def latest_version(key):
    return db.session.execute(
        db.select(ProcessDefinition).where(ProcessDefinition.key == key)
        .order_by(ProcessDefinition.version.desc()).limit(1)
    ).scalar_one_or_none()


def load_definition(data):
    """Store ``data`` as the next version of its key unless it is unchanged.

    Returns ``(definition, created)``. Raises ValidationFailed on a bad file.
    """
    problems = check_definition(data)
    if problems:
        raise ValidationFailed(problems, message="The process definition is invalid.")
    digest = _digest(data)
    current = latest_version(data["key"])
    if current is not None and current.digest == digest:
        return current, False
    definition = ProcessDefinition(
        key=data["key"], name=data["name"], definition=data, digest=digest,
        version=(current.version + 1) if current else 1)
    db.session.add(definition)
    for position, node in enumerate(data["nodes"]):
        db.session.add(Node(process=definition, key=node["key"], name=node.get("name") or node["key"],
                            position=position, assignee=node["assignee"],
                            fields=node.get("fields", [])))
    db.session.flush()
    return definition, True
