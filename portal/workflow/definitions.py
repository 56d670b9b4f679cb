"""Process definitions: loading a JSON definition (contract section 5) or a BPMN file (section 5b) as a new
version of its key when it changed.

Both kinds run on the one engine: a JSON definition is stored with the equivalent BPMN file
(``portal.workflow.bpmn_from_json``), and either file is read by ``portal.workflow.bpmn.load_bpmn``, whose user
tasks become the version's nodes."""
import hashlib
import json
from dataclasses import dataclass

from portal.extensions import db
from portal.models import Node, ProcessDefinition
from portal.errors import ValidationFailed
from portal.workflow.forms import FIELD_TYPES

COLUMN_TYPES = ("text", "number", "date", "select", "boolean")
# Levels of nested objects and lists a JSON file may hold, as in the API's bodies: a definition needs
# six; Python's parser (and the encoders that store and show a definition) recurse once per level and
# raise RecursionError, a 500, on files such as "[[[[...".
MAX_DEPTH = 32
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


def _store_version(*, key, name, source, definition, bpmn, process, digest):
    """The next version of ``key`` with ``process``'s nodes, unless the latest has the same digest."""
    current = latest_version(key)
    if current is not None and current.digest == digest:
        return current, False
    version = ProcessDefinition(key=key, name=name, source=source, definition=definition, bpmn=bpmn,
                                digest=digest, version=(current.version + 1) if current else 1)
    db.session.add(version)
    for position, node in enumerate(process.nodes):
        db.session.add(Node(process=version, key=node["key"], name=node.get("name") or node["key"],
                            position=position, assignee=node["assignee"], fields=node.get("fields", []),
                            candidate_users=node.get("candidate_users", []),
                            candidate_groups=node.get("candidate_groups", []),
                            multi_instance=node.get("multi_instance"),
                            tests_action=bool(node.get("tests_action"))))
    db.session.flush()
    return version, True


def load_definition(data):
    """Store a JSON definition as the next version of its key unless it is unchanged.

    Returns ``(definition, created)``. Raises ValidationFailed on a bad file.
    """
    from portal.workflow.bpmn import load_bpmn
    from portal.workflow.bpmn_from_json import bpmn_from_json
    problems = check_definition(data)
    if problems:
        raise ValidationFailed(problems, message="The process definition is invalid.")
    bpmn = bpmn_from_json(data)
    process = load_bpmn(bpmn)
    # The JSON file's own fields are kept as written (the BPMN form says the same in Camunda's words).
    written = {node["key"]: node for node in data["nodes"]}
    for node in process.nodes:
        node["fields"] = written[node["key"]].get("fields", [])
    return _store_version(key=data["key"], name=data["name"], source="json", definition=data, bpmn=bpmn,
                          process=process, digest=_digest(data))


@dataclass(frozen=True)
class LoadReport:
    """What loading a process file did: the version it stands for, whether it is new, and warnings about
    what the file says that the portal leaves out (a user task's formKey), for the person who loaded it."""
    definition: ProcessDefinition
    created: bool
    warnings: tuple = ()


def _bpmn_report(content):
    from portal.workflow.bpmn import load_bpmn
    process = load_bpmn(content)
    summary = {"key": process.key, "name": process.name, "initiator": process.initiator,
               "nodes": [node["key"] for node in process.nodes]}
    definition, created = _store_version(key=process.key, name=process.name, source="bpmn", definition=summary,
                                         bpmn=process.xml, process=process,
                                         digest=hashlib.sha256(process.xml.encode("utf-8")).hexdigest())
    return LoadReport(definition, created, tuple(process.warnings))


def load_bpmn_definition(content):
    """Store a BPMN file (bytes) as the next version of its process key unless it is unchanged.

    Returns ``(definition, created)``. Raises ValidationFailed naming every refused element.
    """
    report = _bpmn_report(content)
    return report.definition, report.created


def load_process_file(filename, content):
    """``load_process_report``'s version and whether it is new: ``(definition, created)``."""
    report = load_process_report(filename, content)
    return report.definition, report.created


def load_process_report(filename, content):
    """Load an uploaded process file: BPMN (``.bpmn``/``.xml``, or text starting with ``<``) or JSON.

    Returns a ``LoadReport``; a file that is neither, or is refused, raises ValidationFailed with the
    problems keyed by where they are (``file`` for the file as a whole).
    """
    from flask_babel import gettext as _
    name = (filename or "").lower()
    if name.endswith((".bpmn", ".xml")) or content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _bpmn_report(content)
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
    return LoadReport(*load_definition(data))


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
