"""Approve, reject, take, countersign, sign, recall, suspend and resume.

Every function works inside the caller's transaction and raises a
``WorkflowError`` subclass when the action is not allowed; the caller commits
or rolls back. The task row is locked before it is checked
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions here are
``BEGIN IMMEDIATE``), so two approvals of one task cannot both succeed.
"""
from datetime import timedelta

from flask import current_app
from portal.messages import message as _

from portal.errors import NotFound, UserError, ValidationFailed, conflict
from portal.infra.extensions import db
from portal.models import Countersign, History, Instance, ProcessDefinition, Task, User
from portal.models.base import utcnow
from portal.workflow.engine import multi_instance, runtime
from portal.workflow.engine.sync import apply_sync, plan_sync
from portal.workflow.engine.versions import version_shape
from portal.workflow.forms import validate_form, with_own_values
from portal.workflow.store import latest_version
from portal.workflow.visibility import (
    can_act, can_view_task, visible_task, get_task, lock_active, locked_by_other, check_can_act,
    pending_countersign)

ACTIONS = ("approve", "reject")
MAX_COMMENT = 2000


# --- instances -------------------------------------------------------------------

def _engine_step(step):
    """Run ``step`` on the engine; what the engine refuses about the data is the user's to fix.

    The engine reports data it cannot use (a 会签 list that is missing or not a list) as its own
    exceptions or as TypeError/ValueError/KeyError from reading the data; the file was checked at load,
    so these come from the instance's variables.
    """
    from SpiffWorkflow.exceptions import SpiffWorkflowException
    try:
        return step()
    except multi_instance.CollectionTooLong as exc:
        raise multi_instance.refusal(exc) from None
    except (SpiffWorkflowException, runtime.EngineRefused, TypeError, ValueError, KeyError) as exc:
        current_app.logger.info("engine refused the instance's data: %r", exc)
        raise UserError(_("The process cannot go on with these data: %(detail)s", detail=str(exc))) from None


def lock_instance(instance_id):
    """The instance row, locked and read afresh: one engine step at a time per instance."""
    return db.session.execute(
        db.select(Instance).where(Instance.id == instance_id).with_for_update()
        .execution_options(populate_existing=True)).scalar_one()


def _lock_task_and_instance(task_id):
    """(task, its instance, its process version's VersionShape), the two rows locked and read afresh
    in one statement, the task first (the order of every engine step); (None, None, None) when there is
    no such task."""
    row = db.session.execute(
        db.select(Task, Instance, ProcessDefinition.id, ProcessDefinition.digest, ProcessDefinition.created_at)
        .join(Instance, Task.instance_id == Instance.id)
        .join(ProcessDefinition, Instance.process_id == ProcessDefinition.id)
        .where(Task.id == task_id).with_for_update(of=(Task, Instance))
        .execution_options(populate_existing=True)).one_or_none()
    if row is None:
        return None, None, None
    task, instance, *version = row
    return task, instance, version_shape(tuple(version))


def pending_rows(instance_id, *, lock=False):
    query = db.select(Task).where(Task.instance_id == instance_id, Task.status == "pending").order_by(Task.id)
    if lock:
        query = query.with_for_update()
    return db.session.execute(query.execution_options(populate_existing=True)).scalars().all()


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
    variables = dict(data or {})
    initiator = definition.initiator
    if initiator:
        variables[initiator] = user.username
    multi_instance.check_start(definition.nodes, variables)
    workflow = _engine_step(lambda: runtime.new_workflow(definition.bpmn, variables))
    instance = Instance(process=definition, title=title, data=variables, created_by_id=user.id)
    plan = plan_sync(instance, workflow, [])
    db.session.add(instance)
    apply_sync(instance, workflow, plan)
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


def validate_decision(node, action, comment, form, *, required=True):
    """Return the cleaned form; ValidationFailed names each field at fault.

    ``required=False`` checks only the values ``form`` holds: a batch's shared form, whose
    missing fields each item takes from its own task (``decide(keep_own=True)``)."""
    errors = check_decision(action, comment)
    cleaned, form_errors = validate_form(node.fields, form or {},
                                         enforce_required=(action == "approve" and required))
    errors.update(form_errors)
    if errors:
        raise ValidationFailed(errors)
    return cleaned


def decide(task_id, user, action, comment=None, form=None, *, batch_id=None, batch_item_id=None,
           keep_own=False, decided_by_id=None):
    """Approve or reject a task as ``user``; returns the task.

    ``decided_by_id``: the person who chose this decision for ``user`` (who corrected a batch item of
    ``user``'s batch); the history names them, on behalf of ``user``. The task stays ``user``'s.
    With ``keep_own`` (batch items) a field ``form`` leaves out or holds blank takes the task's own
    value (its instance's variable, read under the lock), and the merged values are validated: a
    required field neither sets nor holds is a field error of this task. Every refusal
    (NotFound, Conflict, ValidationFailed, UserError) is raised before anything
    is written, so a caller may record the refusal in the same transaction.
    The task row, then the instance row, are locked: two decisions on one
    instance (the two branches of a parallel split) take turns on its engine
    state, so a join fires once.
    """
    task, instance, version = _lock_task_and_instance(task_id)
    check_can_act(task, user, batch_id=batch_id)
    node = version.nodes_by_id[task.node_id]
    if keep_own:
        form = with_own_values(node.fields, instance.data, form)
    cleaned = validate_decision(node, action, comment, form)
    workflow = runtime.restore(version.bpmn, instance.state)
    # Pending rows match the engine's ready user tasks: read the others only when there are others.
    others = ([row for row in pending_rows(instance.id) if row.id != task.id]
              if len(runtime.ready_user_tasks(workflow)) > 1 else [])
    # The diagram does not route a reject from here: the instance ends.
    ends_here = action == "reject" and not node.tests_action

    def step():
        if ends_here:
            runtime.end(workflow)
        else:
            runtime.complete(workflow, task.engine_task_id, action, cleaned)
        return plan_sync(instance, workflow, others, nodes=version.nodes_by_key)

    plan = _engine_step(step)
    plan.finished = plan.finished or ends_here

    now = utcnow()
    task.status, task.outcome = "done", action
    task.comment, task.form = comment or None, cleaned
    task.completed_by_id, task.completed_at = user.id, now
    release_task(task)
    for_someone = decided_by_id is not None and decided_by_id != user.id
    db.session.add(History(instance_id=instance.id, task_id=task.id, node_id=task.node_id,
                           user_id=decided_by_id if for_someone else user.id,
                           on_behalf_of_id=user.id if for_someone else None,
                           action=action, comment=comment or None,
                           form=cleaned, batch_item_id=batch_item_id, created_at=now))
    instance.data = {**(instance.data or {}), **cleaned, "action": action}
    apply_sync(instance, workflow, plan, final_action=action, opened_by=task, now=now)
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
    request = pending_countersign(task, user) if task is not None else None
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


def recall_refusal(done, following, user):
    """Why ``user`` may not recall ``done`` now, as a reason code, or None.

    ``following`` are the instance's tasks made after ``done``: a recall takes
    the instance back only from the one task it moved on to, while nobody
    touched it (not taken, no countersign).
    """
    if done.status != "done" or done.outcome != "approve" or done.completed_by_id != user.id:
        return "done"
    if done.instance.status != "running":
        return "done"
    if done.instance.suspended:
        return "suspended"
    untouched = (len(following) == 1 and following[0].status == "pending"
                 and not lock_active(following[0]) and not following[0].countersigns)
    return None if untouched else "done"


def recallable_task(instance, user):
    """The task ``user`` approved last, when recalling it would succeed now, else None."""
    tasks = instance.tasks  # in id order
    if len(tasks) < 2:
        return None
    done = tasks[-2]
    return done if recall_refusal(done, tasks[-1:], user) is None else None


def recall(task_id, user):
    """回收: the approver of ``task_id`` takes the instance back to that node,
    provided the task it moved on to has not been touched and nothing else is
    open on the instance. Returns the new task."""
    done = get_task(task_id, for_update=True)
    if done is None or not can_view_task(user, done):
        raise NotFound(_("Task not found."))
    instance = done.instance
    following = db.session.execute(
        db.select(Task).where(Task.instance_id == instance.id, Task.id > done.id)
        .with_for_update()).scalars().all()
    refusal = recall_refusal(done, following, user)
    if refusal is not None:
        raise conflict(refusal)
    instance = lock_instance(instance.id)
    others = [row for row in pending_rows(instance.id) if row.id != following[0].id]
    if others or done.engine_task_id is None:
        raise conflict("done")
    workflow = runtime.restore(instance.process.bpmn, instance.state)

    def step():
        runtime.reset_to(workflow, done.engine_task_id)
        return plan_sync(instance, workflow, [])

    plan = _engine_step(step)
    following[0].status = "recalled"
    task = next(row for row in apply_sync(instance, workflow, plan)
                if row.engine_task_id == done.engine_task_id)
    task.assignee_user_id, task.assignee_role = user.id, None
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
