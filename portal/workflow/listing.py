"""What the workflow pages list: process definitions with their versions,
instances (admins), a user's pending tasks and countersignatures, and an
instance's history."""
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import Countersign, History, Instance, Node, ProcessDefinition, Task
from portal.models.base import contains
from portal.paging import numbered_page
from portal.workflow.visibility import pending_tasks_query

INSTANCE_STATUSES = ("running", "approved", "rejected")


def process_summaries():
    """[(latest definition, [versions, newest first])] by process key."""
    definitions = db.session.execute(
        db.select(ProcessDefinition).order_by(ProcessDefinition.key,
                                              ProcessDefinition.version.desc())).scalars().all()
    by_key = {}
    for definition in definitions:
        by_key.setdefault(definition.key, []).append(definition)
    return [(versions[0], versions) for versions in by_key.values()]


def versions_of(definition):
    """Every version of ``definition``'s process, newest first."""
    return db.session.execute(
        db.select(ProcessDefinition).where(ProcessDefinition.key == definition.key)
        .order_by(ProcessDefinition.version.desc())).scalars().all()


def instances_page(*, status=None, suspended_only=False, title=None, page=1, page_size=50):
    """Instances newest first, narrowed by status, suspension and title."""
    query = db.select(Instance).options(selectinload(Instance.process),
                                        selectinload(Instance.tasks).selectinload(Task.node))
    if status in INSTANCE_STATUSES:
        query = query.where(Instance.status == status)
    if suspended_only:
        query = query.where(Instance.suspended.is_(True))
    if title:
        query = query.where(contains(Instance.title, title))
    return numbered_page(query, Instance.id.desc(), page=page, page_size=page_size)


def pending_tasks_page(user, *, node_id=None, process_key=None, title=None, page=1,
                       page_size=50):
    """The tasks ``user`` may handle now (My tasks), oldest first."""
    query = pending_tasks_query(user, node_id=node_id, process_key=process_key,
                                title_contains=title or None).options(
        selectinload(Task.instance), selectinload(Task.countersigns),
        selectinload(Task.lock_holder), selectinload(Task.node).selectinload(Node.process))
    return numbered_page(query, Task.id, page=page, page_size=page_size)


def awaiting_signature(user, limit=50):
    """Countersignatures ``user`` was asked for on tasks still waiting."""
    return db.session.execute(
        db.select(Countersign).join(Task, Countersign.task_id == Task.id)
        .join(Instance, Task.instance_id == Instance.id)
        .where(Countersign.user_id == user.id, Countersign.status == "pending",
               Task.status == "pending", Instance.status == "running")
        .options(selectinload(Countersign.task).selectinload(Task.instance),
                 selectinload(Countersign.requested_by))
        .order_by(Countersign.id).limit(limit)).scalars().all()


def instance_history(instance):
    """What happened to ``instance``, oldest first."""
    return db.session.execute(
        db.select(History).where(History.instance_id == instance.id)
        .options(selectinload(History.user), selectinload(History.node))
        .order_by(History.id)).scalars().all()
