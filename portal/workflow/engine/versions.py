"""What an engine step needs of a process version, read once per process: its BPMN file and its nodes.

A version never changes once loaded (a changed file makes a new version, ``portal.workflow.store``),
so a worker may keep what it read of it. Reading it on every decision cost three statements (the
definition with its file, its nodes, the task's node) in a transaction of about ten.

Entries are keyed by the version's id, digest and creation time, not by its id alone: a database that is
emptied or restored from a backup gives its ids out again, and an entry must never stand for another
version.
"""
import copy
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

from portal.infra.extensions import db
from portal.models import Node, ProcessDefinition

MAX_VERSIONS = 64


@dataclass(frozen=True)
class NodeShape:
    """A node as an engine step reads it (``Node``'s columns of the same names); never to be changed."""
    id: int
    key: str
    name: str
    assignee: str
    fields: list
    tests_action: bool


@dataclass(frozen=True)
class VersionShape:
    bpmn: str
    nodes_by_key: dict
    nodes_by_id: dict


_shapes = OrderedDict()
_guard = Lock()


def version_key(definition):
    """The cache key of a ``ProcessDefinition`` (or of a row with its id, digest and created_at)."""
    return (definition.id, definition.digest, definition.created_at)


def version_shape(key):
    """The VersionShape of the version ``key`` names (see ``version_key``), read on the first call."""
    with _guard:
        shape = _shapes.get(key)
        if shape is not None:
            _shapes.move_to_end(key)
            return shape
    shape = _read(key)
    with _guard:
        _shapes[key] = shape
        while len(_shapes) > MAX_VERSIONS:
            _shapes.popitem(last=False)
    return shape


def _read(key):
    definition = db.session.get(ProcessDefinition, key[0])
    if definition is None or version_key(definition) != key:
        raise LookupError(f"process version {key!r} is not in this database")
    nodes = db.session.execute(db.select(Node).where(Node.process_id == definition.id)
                               .order_by(Node.position)).scalars().all()
    shapes = [NodeShape(node.id, node.key, node.name, node.assignee, copy.deepcopy(node.fields or []),
                        bool(node.tests_action)) for node in nodes]
    return VersionShape(definition.bpmn, {node.key: node for node in shapes},
                        {node.id: node for node in shapes})

