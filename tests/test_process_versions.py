"""What engine steps keep of a process version (portal.workflow.engine.versions): read once, never another's."""
import pytest

from portal.infra.extensions import db
from portal.models import Node, ProcessDefinition
from portal.workflow.engine.versions import version_key, version_shape
from portal.workflow.process_files import load_definition


def _definition(key, node_keys):
    return {"key": key, "name": key.title(),
            "nodes": [{"key": node, "name": node.title(), "assignee": "user:alice",
                       "fields": [{"key": "amount", "label": "Amount", "type": "number"}]}
                      for node in node_keys]}


def test_a_version_is_read_once_and_keeps_its_nodes(app, users):
    definition, _created = load_definition(_definition("trip", ["manager", "finance"]))
    db.session.commit()
    shape = version_shape(version_key(definition))
    assert [node.key for node in shape.nodes_by_key.values()] == ["manager", "finance"]
    assert shape.bpmn == definition.bpmn and "<bpmn:userTask" in shape.bpmn
    node = db.session.execute(db.select(Node).where(Node.process_id == definition.id,
                                                    Node.key == "finance")).scalar_one()
    assert shape.nodes_by_id[node.id].assignee == "user:alice"
    assert version_shape(version_key(definition)) is shape


def test_an_id_given_out_again_never_finds_the_version_that_had_it(app, users):
    """A database emptied (or restored) gives ids out again: the entry of the old version must
    not stand for the new one."""
    first, _created = load_definition(_definition("trip", ["manager", "finance"]))
    db.session.commit()
    old = version_shape(version_key(first))
    process_id = first.id
    db.session.execute(db.delete(Node).where(Node.process_id == process_id))
    db.session.execute(db.delete(ProcessDefinition).where(ProcessDefinition.id == process_id))
    db.session.commit()
    second, _created = load_definition(_definition("trip", ["director"]))
    db.session.commit()
    if second.id != process_id:
        # SQLite gives the id out again by itself; a PostgreSQL sequence does not: store the same
        # version under the old id, as a restored backup would
        loaded, second = second, ProcessDefinition(
            id=process_id, key="trip-again", name=second.name, version=1, source=second.source,
            definition=second.definition, bpmn=second.bpmn, digest=second.digest,
            created_at=second.created_at)
        db.session.add(second)
        db.session.add_all([Node(process=second, key=node.key, name=node.name, position=node.position,
                                 assignee=node.assignee, fields=node.fields) for node in loaded.nodes])
        db.session.commit()
    shape = version_shape(version_key(second))
    assert shape is not old
    assert list(shape.nodes_by_key) == ["director"]


def test_a_key_this_database_does_not_hold_is_refused(app, users):
    definition, _created = load_definition(_definition("trip", ["manager"]))
    db.session.commit()
    with pytest.raises(LookupError):
        version_shape((definition.id, "0" * 64, definition.created_at))
