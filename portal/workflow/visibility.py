"""Who may see a task and who may act on it now, as one set of rules.

Pages, the API, batch creation and the item runner all ask here: whether a
user may open a task (``may_open``), which tasks are theirs to handle
(``pending_tasks_query``), and why they cannot act on one right now
(``blocking_reason``, a reason code). The task pages show the same rules as
badges (``task_flags``) and as what the task page offers (``task_choices``).
"""
import time
from dataclasses import dataclass

from portal.messages import message as _
from sqlalchemy import and_, or_

from portal.errors import NotFound, UserError, conflict
from portal.infra.extensions import db
from portal.models import Countersign, Instance, Node, ProcessDefinition, Task
from portal.models.base import contains, utcnow


# How long a user's candidate nodes are reused: a long batch asks for every item.
CANDIDATE_CACHE_SECONDS = 2.0


def candidate_node_ids(user):
    """Ids of the nodes with assignee "candidates" that name ``user`` or one of their roles.

    Read from the few such nodes, kept on the user object for a moment so that a batch of
    candidate tasks asks once, not once per task.
    """
    cached = getattr(user, "_candidate_nodes", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < CANDIDATE_CACHE_SECONDS:
        return cached[1]
    roles = set(user.roles_list)
    rows = db.session.execute(db.select(Node.id, Node.candidate_users, Node.candidate_groups)
                              .where(Node.assignee == "candidates")).all()
    ids = frozenset(node_id for node_id, users, groups in rows
                    if user.username in (users or []) or roles.intersection(groups or []))
    user._candidate_nodes = (now, ids)
    return ids


def assigned_to(user):
    """SQL condition: tasks assigned to ``user`` directly, through a role, or as a candidate."""
    roles = user.roles_list
    conditions = [Task.assignee_user_id == user.id]
    if roles:
        conditions.append(Task.assignee_role.in_(roles))
    candidate_nodes = candidate_node_ids(user)
    if candidate_nodes:
        conditions.append(and_(Task.node_id.in_(sorted(candidate_nodes)), Task.assignee_user_id.is_(None),
                               Task.assignee_role.is_(None)))
    return or_(*conditions) if len(conditions) > 1 else conditions[0]


def can_act(user, task):
    """Whether ``user`` is who ``task`` waits for (a Task or a TaskState)."""
    if task.assignee_user_id is not None:
        return task.assignee_user_id == user.id
    if task.assignee_role is not None:
        return task.assignee_role in user.roles_list
    return task.node_id in candidate_node_ids(user)


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
    """Its starter, supervisors and admins, and whoever may open one of its tasks (contract section 4)."""
    if user.is_supervisor or instance.created_by_id == user.id:
        return True
    return any(can_view_task(user, t) for t in instance.tasks)


def visible_instance(user, instance_id):
    """The instance if ``user`` may see it, else NotFound (missing and hidden look alike)."""
    instance = db.session.get(Instance, instance_id)
    if instance is None or not can_view_instance(user, instance):
        raise NotFound(_("Instance not found."))
    return instance


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
        query = query.where(contains(Instance.title, title_contains))
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
    node_id: int | None = None  # whose candidates may act, when no assignee is named


def task_state(task):
    return TaskState(task.status, task.instance.status, task.instance.suspended,
                     task.assignee_user_id, task.assignee_role,
                     any(c.status == "pending" for c in task.countersigns),
                     task.lock_holder_id, task.lock_batch_id, task.lock_expires_at, task.node_id)


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


def pending_countersign(task, user):
    """The countersign ``user`` was asked for on ``task`` and has not given yet, or None."""
    return next((c for c in task.countersigns if c.user_id == user.id and c.status == "pending"), None)


@dataclass(frozen=True)
class TaskFlags:
    """Badges of a pending task, as the viewer sees them."""
    suspended: bool
    countersigning: bool
    locked_by_batch: bool
    locked_by_other: bool
    locked_by_me: bool
    lock_holder: str | None


def task_flags(task, user, now=None):
    now = now or utcnow()
    locked = lock_active(task, now)
    return TaskFlags(
        suspended=task.instance.suspended,
        countersigning=any(c.status == "pending" for c in task.countersigns),
        locked_by_batch=locked and task.lock_batch_id is not None,
        locked_by_other=locked_by_other(task, user, now=now),
        locked_by_me=locked and task.lock_batch_id is None and task.lock_holder_id == user.id,
        lock_holder=task.lock_holder.username if locked and task.lock_holder else None,
    )


@dataclass(frozen=True)
class TaskChoices:
    """What the task page offers ``user`` now: whether they may decide and take the task, the reason code
    they are told when they may not (None when the task is not theirs: nothing about it is told), the
    task's badges and the countersign they were asked for."""
    can_decide: bool
    can_take: bool
    shown_reason: str | None
    flags: TaskFlags
    my_countersign: Countersign | None


def task_choices(task, user):
    blocked = blocking_reason(task_state(task), user)
    flags = task_flags(task, user)
    return TaskChoices(can_decide=blocked is None, can_take=blocked is None and not flags.locked_by_me,
                       shown_reason=blocked if blocked not in (None, "not_yours", "gone") else None,
                       flags=flags, my_countersign=pending_countersign(task, user))
