"""Instances that run with nothing to wait on: found, and repaired from their stored engine state.

An instance is ``running`` while the engine waits on something for it. Today that is always a person: a
pending Task row (the engine has no timers, messages or external tasks yet). ``waits_on_something`` says so
as SQL, the one place to extend when the engine learns to wait on more. A running instance that waits on
nothing was left so by a defect (a 会签 whose completion the engine missed, a Task row never written):
nobody can act on it and it never ends.

``repair_instance`` works in the caller's transaction, with the instance row locked: it restores the
engine state, runs the engine on (``runtime.resume``) and writes what that gives, as a decision would
(``sync``): the instance reaches its end, or gets Task rows for the user tasks the engine has
ready. When the engine has nothing ready and has not ended, or cannot run the state, it writes nothing and
says why; the caller rolls back and reports.
"""
from dataclasses import dataclass, field

from portal.infra.extensions import db
from portal.models import Instance, Task
from portal.workflow.engine import runtime
from portal.workflow.engine.sync import apply_sync, plan_sync


@dataclass
class Repair:
    instance_id: int
    repaired: bool
    status: str = "running"
    opened: list = field(default_factory=list)  # node keys of the Task rows written
    reason: str | None = None  # why it could not be repaired


def waits_on_something(instance=Instance):
    """SQL: the engine waits on something for ``instance`` (a pending task; later timers, messages...)."""
    return db.exists().where(Task.instance_id == instance.id, Task.status == "pending")


def stuck_instance_ids(limit=None):
    """Ids of running instances that wait on nothing (at most ``limit``), oldest first (read in the
    caller's transaction)."""
    return db.session.execute(
        db.select(Instance.id).where(Instance.status == "running", ~waits_on_something())
        .order_by(Instance.id).limit(limit)).scalars().all()


def _lock_if_stuck(instance_id):
    """The instance, locked, when it is still running and waits on nothing; else None.

    Every change to an instance's tasks holds its row lock (``engine``), so the tasks are read after the
    lock is taken, in a statement of their own: they are then what the last committed change left. An
    instance locked by someone else is being moved on: skipped (``skip_locked``) rather than waited for.
    """
    instance = db.session.execute(
        db.select(Instance).where(Instance.id == instance_id, Instance.status == "running")
        .with_for_update(skip_locked=True).execution_options(populate_existing=True)).scalar_one_or_none()
    if instance is None:
        return None
    if db.session.execute(db.select(waits_on_something(instance))).scalar():
        return None
    return instance


def repair_instance(instance_id):
    """Run the engine on for a stuck instance (see the module); a Repair, or None if it is not stuck now."""
    instance = _lock_if_stuck(instance_id)
    if instance is None:
        return None
    if not instance.state or not instance.process.bpmn:
        return Repair(instance.id, False, reason="no engine state to run")
    try:
        workflow = runtime.restore(instance.process.bpmn, instance.state)
        runtime.resume(workflow)
        plan = plan_sync(instance, workflow, [])
    except Exception as exc:  # noqa: BLE001 - whatever the state does, the instance is left and reported
        return Repair(instance.id, False, reason=f"{type(exc).__name__}: {exc}")
    if not plan.opened and not plan.finished:
        return Repair(instance.id, False, reason="the engine has no user task ready and has not ended")
    # The status an end gives follows the decision that led there (contract), the last one recorded.
    apply_sync(instance, workflow, plan, final_action=(instance.data or {}).get("action"))
    db.session.flush()
    return Repair(instance.id, True, status=instance.status,
                  opened=[node.key for _ident, node, _columns in plan.opened])
