"""The engine's ready user tasks as Task rows, written in the caller's transaction.

After the engine moved an instance on (``portal.workflow.engine.runtime``), ``plan_sync`` works out, before anything
is written, which Task rows to open (one per newly ready user task, with its assignee resolved) and which
pending ones the engine withdrew; ``apply_sync`` writes them together with the instance's state and status.
Resolving every assignee first keeps the rule of ``engine.decide``: a refusal (an assignee that names no user)
is raised before anything changes.

Assignees (``Node.assignee``): ``user:NAME`` and ``var:VARIABLE`` (the instance variable holds a user name: the
start initiator, a 会签 element variable, data given at start) name one user; ``role:NAME`` is anyone holding the
role; ``candidates`` leaves both empty and ``visibility`` reads the node's candidate users and groups.
"""
from dataclasses import dataclass, field

from portal.messages import message as _

from portal.errors import UserError
from portal.infra.extensions import db
from portal.models import Task, User
from portal.models.base import utcnow
from portal.workflow.engine import runtime


@dataclass
class SyncPlan:
    opened: list = field(default_factory=list)  # (engine task id, node, assignee columns)
    withdrawn: list = field(default_factory=list)  # pending Task rows the engine no longer has ready
    finished: bool = False


def _user_id(node, name):
    user = db.session.execute(db.select(User).where(User.username == name)).scalar_one_or_none()
    if user is None:
        raise UserError(_("Node %(node)s is assigned to unknown user %(name)s.", node=node.key, name=name))
    return user.id


def assignee_columns(node, variables):
    """The Task columns naming who may act on a task at ``node``, given the task's variables."""
    kind, _sep, name = node.assignee.partition(":")
    if kind == "role":
        return {"assignee_role": name}
    if kind == "user":
        return {"assignee_user_id": _user_id(node, name)}
    if kind == "var":
        value = variables.get(name)
        if not isinstance(value, str) or not value.strip():
            raise UserError(_("Node %(node)s is assigned to the user named by the variable %(variable)s, "
                              "which holds no user name.", node=node.key, variable=name))
        return {"assignee_user_id": _user_id(node, value.strip())}
    return {}  # candidates


def plan_sync(instance, workflow, pending, *, nodes=None):
    """What to write so that ``pending`` (the instance's pending Task rows) match the engine.

    ``nodes`` maps node keys to the process version's nodes (``Node`` rows or ``versions.NodeShape``);
    by default the instance's process gives them."""
    if nodes is None:
        nodes = {node.key: node for node in instance.process.nodes}
    ready = runtime.ready_user_tasks(workflow)
    ready_ids = {str(task.id) for task in ready}
    plan = SyncPlan(finished=workflow.is_completed())
    plan.withdrawn = [row for row in pending if row.engine_task_id not in ready_ids]
    known = {row.engine_task_id for row in pending}
    for task in ready:
        ident = str(task.id)
        if ident in known:
            continue
        node = nodes.get(runtime.node_key(task))
        if node is None:  # the file and its nodes are stored together; a mismatch is a defect
            raise RuntimeError(f"no node {runtime.node_key(task)!r} in process {instance.process_id}")
        plan.opened.append((ident, node, assignee_columns(node, runtime.variables_of(task))))
    return plan


def apply_sync(instance, workflow, plan, *, final_action=None, opened_by=None, now=None):
    """Write the plan: withdrawn rows cancelled, new rows opened (by the decision on ``opened_by``),
    the state and, at the end, the status."""
    now = now or utcnow()
    for row in plan.withdrawn:
        row.status = "cancelled"
        row.lock_holder_id = row.lock_expires_at = row.lock_batch_id = None
    opened = []
    for ident, node, columns in plan.opened:
        row = Task(instance=instance, node_id=node.id, engine_task_id=ident, created_at=now,
                   opened_by_id=opened_by.id if opened_by is not None else None, **columns)
        db.session.add(row)
        opened.append(row)
    instance.state = runtime.dump(workflow)
    if plan.finished and instance.status == "running":
        instance.status = "rejected" if final_action == "reject" else "approved"
        instance.finished_at = now
    return opened
