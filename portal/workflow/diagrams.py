"""What a process diagram marks on its user tasks: for one instance, which are done, current or rejected; for
a process version, how many tasks wait at each. The diagram routes and template globals (``portal.web.diagrams``)
draw these on the version's BPMN file; a version stored without one (very old rows) has no diagram: None.
"""
from datetime import datetime

from portal.infra.extensions import db
from portal.models import Instance, Node, Task


def instance_markers(instance):
    """``{"done", "active", "rejected"}``: sorted node keys (user task ids), or None without a BPMN file.

    ``done``: nodes with a done task; ``active``: nodes with a pending task; ``rejected``: nodes whose most
    recently completed task was rejected (a later approval there clears it). The caller has checked that the
    viewer may see the instance.
    """
    if instance.process.bpmn is None:
        return None
    rows = db.session.execute(
        db.select(Node.key, Task.status, Task.outcome, Task.completed_at, Task.id)
        .join(Node, Task.node_id == Node.id)
        .where(Task.instance_id == instance.id)).all()
    done, active, last_outcome = set(), set(), {}
    # Oldest first, so each node's last completed task writes its outcome last; a done task
    # without a completion time (should not happen) counts as the oldest.
    for key, status, outcome, _completed_at, _task_id in sorted(
            rows, key=lambda row: (row.completed_at or datetime.min, row.id)):
        if status == "pending":
            active.add(key)
        elif status == "done":
            done.add(key)
            last_outcome[key] = outcome
    return {"done": sorted(done), "active": sorted(active),
            "rejected": sorted(key for key, outcome in last_outcome.items() if outcome == "reject")}


def pending_counts(definition):
    """{node key: pending tasks of running instances there} for the node keys of the version ``definition``
    that have any, or None without a BPMN file."""
    if definition.bpmn is None:
        return None
    rows = db.session.execute(
        db.select(Node.key, db.func.count(Task.id))
        .join(Task, Task.node_id == Node.id)
        .join(Instance, Task.instance_id == Instance.id)
        .where(Node.process_id == definition.id, Task.status == "pending",
               Instance.status == "running")
        .group_by(Node.key)).all()
    return {key: count for key, count in rows}
