"""Process versions as stored: the latest version of a process key, and a loaded process stored as the next
version of its key unless it is the version already stored.

A version never changes once stored: a changed file makes a new version, an unchanged one (the same digest)
is the latest version again. What is stored comes from the loader (``portal.workflow.loading.bpmn``'s
``BpmnProcess``), through ``portal.workflow.process_files``; the engine reads versions
(``portal.workflow.engine``).
"""
from portal.infra.extensions import db
from portal.models import Node, ProcessDefinition


def latest_version(key):
    return db.session.execute(
        db.select(ProcessDefinition).where(ProcessDefinition.key == key)
        .order_by(ProcessDefinition.version.desc()).limit(1)
    ).scalar_one_or_none()


def store_version(*, key, name, source, definition, bpmn, process, digest):
    """The next version of ``key`` with ``process``'s nodes, unless the latest has the same digest.

    Returns ``(version, created)``."""
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
