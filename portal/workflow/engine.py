"""Approve, reject, take, countersign, sign, recall, suspend and resume.

Every function works inside the caller's transaction and raises a
``WorkflowError`` subclass when the action is not allowed; the caller commits
or rolls back. The task row is locked before it is checked
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions here are
``BEGIN IMMEDIATE``), so two approvals of one task cannot both succeed.
"""
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import or_

from portal.extensions import db
from portal.models import Countersign, History, Instance, Node, ProcessDefinition, Task, User
from portal.models.base import utcnow
from portal.workflow.definitions import latest_version
from portal.errors import NotFound, UserError, ValidationFailed, conflict
from portal.workflow.forms import validate_form

ACTIONS = ("approve", "reject")
MAX_COMMENT = 2000


# --- who may see and act -------------------------------------------------------

def assigned_to(user):
    """SQL condition: tasks assigned to ``user`` directly or through a role."""
    roles = user.roles_list
    condition = Task.assignee_user_id == user.id
    return or_(condition, Task.assignee_role.in_(roles)) if roles else condition


def can_act(user, task):
    return task.assignee_user_id == user.id or (
        task.assignee_role is not None and task.assignee_role in user.roles_list)


def may_open(user, task, *, completed_by_id, signer):
    """Whether ``user`` may open a task: the one rule behind pages, API and
    batches. ``task`` is a Task or a TaskState; ``signer`` says whether the
    user was asked to countersign it."""
    return (user.is_admin or can_act(user, task) or completed_by_id == user.id
            or bool(signer))


def can_view_task(user, task):
    return may_open(user, task, completed_by_id=task.completed_by_id,
                    signer=any(c.user_id == user.id for c in task.countersigns))


def can_view_instance(user, instance):
    if user.is_admin or instance.created_by_id == user.id:
        return True
    return any(can_view_task(user, t) for t in instance.tasks)


def visible_task(user, task_id, *, for_update=False):
    """The task if ``user`` may see it, else NotFound (missing and hidden look alike)."""
    task = get_task(task_id, for_update=for_update)
    if task is None or not can_view_task(user, task):
        raise NotFound(_("Task not found."))
    return task


def get_task(task_id, *, for_update=False):
    query = db.select(Task).where(Task.id == task_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one_or_none()


def pending_tasks_query(user, *, node_id=None, process_key=None, title_contains=None):
    """Pending tasks of running instances that ``user`` may handle."""
    query = (db.select(Task).join(Instance, Task.instance_id == Instance.id)
             .where(Task.status == "pending", Instance.status == "running", assigned_to(user)))
    if node_id is not None:
        query = query.where(Task.node_id == node_id)
    if process_key:
        query = query.join(Node, Task.node_id == Node.id).join(
            ProcessDefinition, Node.process_id == ProcessDefinition.id).where(
            ProcessDefinition.key == process_key)
    if title_contains:
        escaped = title_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Instance.title.ilike(f"%{escaped}%", escape="\\"))
    return query


def pending_counts_by_node(user, process_key=None):
    """[(node, count)] for nodes where ``user`` has pending tasks."""
    tasks = pending_tasks_query(user, process_key=process_key).subquery()
    rows = db.session.execute(
        db.select(Node, db.func.count(tasks.c.id)).join(tasks, tasks.c.node_id == Node.id)
        .group_by(Node.id).order_by(Node.id)).all()
    return [(node, count) for node, count in rows]


@dataclass(frozen=True)
class TaskState:
    """What eligibility depends on, read from an ORM task or a bulk query row."""
    status: str
    instance_status: str
    suspended: bool
    assignee_user_id: int | None
    assignee_role: str | None
    countersigning: bool
    lock_holder_id: int | None
    lock_batch_id: int | None
    lock_expires_at: object


def task_state(task):
    return TaskState(task.status, task.instance.status, task.instance.suspended,
                     task.assignee_user_id, task.assignee_role,
                     any(c.status == "pending" for c in task.countersigns),
                     task.lock_holder_id, task.lock_batch_id, task.lock_expires_at)


def lock_active(task, now=None):
    if task.lock_holder_id is None:
        return False
    if task.lock_batch_id is not None or task.lock_expires_at is None:
        return True
    return task.lock_expires_at > (now or utcnow())


def locked_by_other(task, user, batch_id=None, now=None):
    """True when someone else (or another batch) holds the task's lock."""
    if not lock_active(task, now):
        return False
    if task.lock_batch_id is not None:
        return task.lock_batch_id != batch_id
    return task.lock_holder_id != user.id


def blocking_reason(state, user, *, batch_id=None, now=None):
    """Why ``user`` cannot act on a task in ``state`` now, as a reason code, or None.

    ``state`` is a TaskState (or None for a task that does not exist).
    """
    if state is None:
        return "gone"
    if state.status != "pending" or state.instance_status != "running":
        return "done"
    if not can_act(user, state):
        return "not_yours"
    if state.suspended:
        return "suspended"
    if state.countersigning:
        return "countersigning"
    if locked_by_other(state, user, batch_id, now):
        return "locked"
    return None


def check_can_act(task, user, *, batch_id=None):
    reason = blocking_reason(task_state(task) if task is not None else None, user,
                             batch_id=batch_id)
    if reason in ("gone", "not_yours"):
        raise NotFound(_("Task not found."), reason="unavailable")
    if reason:
        raise conflict(reason)
    if user.disabled:
        raise UserError(_("User %(name)s is disabled.", name=user.username))


# --- instances -------------------------------------------------------------------

def _resolve_assignee(node):
    kind, _sep, name = node.assignee.partition(":")
    if kind == "role":
        return {"assignee_role": name}
    user = db.session.execute(db.select(User).where(User.username == name)).scalar_one_or_none()
    if user is None:
        raise UserError(_("Node %(node)s is assigned to unknown user %(name)s.",
                          node=node.key, name=name))
    return {"assignee_user_id": user.id}


def _open_task(instance, node):
    task = Task(instance=instance, node_id=node.id, **_resolve_assignee(node))
    db.session.add(task)
    return task


def start_instance(process_key, title, data, user):
    definition = latest_version(process_key) if isinstance(process_key, str) else None
    if definition is None:
        raise ValidationFailed({"process": _("Unknown process.")})
    title = (title or "").strip() if isinstance(title, str) else ""
    errors = {}
    if not title:
        errors["title"] = _("This field is required.")
    elif len(title) > 300:
        errors["title"] = _("At most %(n)s characters.", n=300)
    if data is not None and not isinstance(data, dict):
        errors["data"] = _("Must be an object.")
    if errors:
        raise ValidationFailed(errors)
    instance = Instance(process=definition, title=title, data=data or {}, created_by_id=user.id)
    db.session.add(instance)
    _open_task(instance, definition.nodes[0])
    db.session.add(History(instance=instance, user_id=user.id, action="start"))
    db.session.flush()
    return instance


# --- acting on tasks ----------------------------------------------------------------

def take_task(task_id, user):
    """Take the task's lock for TASK_LOCK_MINUTES (opening or taking a task)."""
    task = visible_task(user, task_id, for_update=True)
    if task.status == "pending" and can_act(user, task):
        if locked_by_other(task, user):
            raise conflict("locked")
        if task.lock_batch_id is None:
            task.lock_holder_id = user.id
            task.lock_expires_at = utcnow() + timedelta(
                minutes=current_app.config["TASK_LOCK_MINUTES"])
    return task


def release_task(task):
    task.lock_holder_id = None
    task.lock_expires_at = None
    task.lock_batch_id = None


def check_decision(action, comment):
    errors = {}
    if action not in ACTIONS:
        errors["action"] = _("Choose approve or reject.")
    if comment is not None and not isinstance(comment, str):
        errors["comment"] = _("Must be text.")
    elif comment and len(comment) > MAX_COMMENT:
        errors["comment"] = _("At most %(n)s characters.", n=MAX_COMMENT)
    return errors


def validate_decision(node, action, comment, form):
    """Return the cleaned form; ValidationFailed names each field at fault."""
    errors = check_decision(action, comment)
    cleaned, form_errors = validate_form(node.fields, form or {},
                                         enforce_required=(action == "approve"))
    errors.update(form_errors)
    if errors:
        raise ValidationFailed(errors)
    return cleaned


def decide(task_id, user, action, comment=None, form=None, *, batch_id=None, batch_item_id=None):
    """Approve or reject a task as ``user``; returns the task.

    The one path for a single approval and a batch item alike. Every refusal
    (NotFound, Conflict, ValidationFailed, UserError) is raised before anything
    is written, so a caller may record the refusal in the same transaction.
    """
    task = get_task(task_id, for_update=True)
    check_can_act(task, user, batch_id=batch_id)
    cleaned = validate_decision(task.node, action, comment, form)
    instance = task.instance
    next_node = None
    if action == "approve":
        following = [n for n in instance.process.nodes if n.position > task.node.position]
        next_node = following[0] if following else None
    next_assignee = _resolve_assignee(next_node) if next_node is not None else None

    now = utcnow()
    task.status, task.outcome = "done", action
    task.comment, task.form = comment or None, cleaned
    task.completed_by_id, task.completed_at = user.id, now
    release_task(task)
    db.session.add(History(instance_id=instance.id, task_id=task.id, node_id=task.node_id,
                           user_id=user.id, action=action, comment=comment or None,
                           form=cleaned, batch_item_id=batch_item_id, created_at=now))
    if next_node is not None:
        db.session.add(Task(instance=instance, node_id=next_node.id, **next_assignee))
    else:
        instance.status = "rejected" if action == "reject" else "approved"
        instance.finished_at = now
    db.session.flush()
    return task


def countersign(task_id, user, signer_name, comment=None):
    """The task's holder asks ``signer_name`` to sign before it can be approved."""
    task = get_task(task_id, for_update=True)
    check_can_act(task, user)
    signer = db.session.execute(
        db.select(User).where(User.username == (signer_name or "").strip())).scalar_one_or_none()
    if signer is None or signer.disabled:
        raise ValidationFailed({"signer": _("Unknown user.")})
    if signer.id == user.id:
        raise ValidationFailed({"signer": _("Choose someone else.")})
    errors = check_decision("approve", comment)
    if errors:
        raise ValidationFailed(errors)
    db.session.add(Countersign(task=task, user_id=signer.id, requested_by_id=user.id,
                               comment=comment or None))
    task.lock_holder_id = user.id  # the holder keeps the task while it waits
    task.lock_expires_at = utcnow() + timedelta(minutes=current_app.config["TASK_LOCK_MINUTES"])
    db.session.add(History(instance_id=task.instance_id, task_id=task.id, node_id=task.node_id,
                           user_id=user.id, action="countersign",
                           comment=comment or None, form={"signer": signer.username}))
    db.session.flush()
    return task


def sign(task_id, user, comment=None):
    task = get_task(task_id, for_update=True)
    request = next((c for c in (task.countersigns if task else [])
                    if c.user_id == user.id and c.status == "pending"), None)
    if task is None or request is None:
        raise NotFound(_("Task not found."))
    if task.status != "pending":
        raise conflict("done")
    errors = check_decision("approve", comment)
    if errors:
        raise ValidationFailed(errors)
    request.status, request.signed_at = "signed", utcnow()
    db.session.add(History(instance_id=task.instance_id, task_id=task.id, node_id=task.node_id,
                           user_id=user.id, action="sign", comment=comment or None))
    db.session.flush()
    return task


def recall(task_id, user):
    """回收: the approver of ``task_id`` takes the instance back to that node,
    provided the task it moved on to has not been touched. Returns the new task."""
    done = get_task(task_id, for_update=True)
    if done is None or not can_view_task(user, done):
        raise NotFound(_("Task not found."))
    instance = done.instance
    if done.status != "done" or done.outcome != "approve" or done.completed_by_id != user.id:
        raise conflict("done")
    if instance.status != "running" or instance.suspended:
        raise conflict("done" if instance.status != "running" else "suspended")
    following = db.session.execute(
        db.select(Task).where(Task.instance_id == instance.id, Task.id > done.id)
        .with_for_update()).scalars().all()
    untouched = (len(following) == 1 and following[0].status == "pending"
                 and not lock_active(following[0]) and not following[0].countersigns)
    if not untouched:
        raise conflict("done")
    following[0].status = "recalled"
    task = Task(instance=instance, node_id=done.node_id, assignee_user_id=user.id)
    db.session.add(task)
    db.session.add(History(instance_id=instance.id, task_id=done.id, node_id=done.node_id,
                           user_id=user.id, action="recall"))
    db.session.flush()
    return task


def set_suspended(instance_id, user, suspended):
    if not user.is_admin:
        raise NotFound(_("Instance not found."))
    instance = db.session.execute(
        db.select(Instance).where(Instance.id == instance_id).with_for_update()).scalar_one_or_none()
    if instance is None:
        raise NotFound(_("Instance not found."))
    if instance.status != "running" or instance.suspended == suspended:
        raise conflict("done")
    instance.suspended = suspended
    db.session.add(History(instance_id=instance.id, user_id=user.id,
                           action="suspend" if suspended else "resume"))
    db.session.flush()
    return instance
