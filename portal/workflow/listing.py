"""What the workflow pages and the API list: process definitions with their versions,
instances (admins), a user's pending and done tasks and countersignatures, and an
instance's history and tasks (in pages: a long instance is read a page at a time)."""
from sqlalchemy.orm import selectinload

from portal.infra.extensions import db
from portal.infra.paging import keyset_page, latest_page, numbered_page
from portal.models import Countersign, History, Instance, Node, ProcessDefinition, Task
from portal.models.base import contains
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


def tasks_of(user, *, done=False, node_id=None):
    """The query of ``user``'s tasks the API lists (``/tasks``), to be paged by ``Task.id``: the tasks
    ``user`` may handle now (``pending_tasks_query``), or with ``done`` the tasks ``user`` completed
    (approved or rejected), the ones a recall may start from; ``node_id`` narrows either to one node."""
    if not done:
        query = pending_tasks_query(user, node_id=node_id)
    else:
        query = db.select(Task).where(Task.status == "done", Task.completed_by_id == user.id)
        if node_id is not None:
            query = query.where(Task.node_id == node_id)
    return query.options(selectinload(Task.instance), selectinload(Task.lock_holder),
                         selectinload(Task.assignee_user))


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


def _history_query(instance):
    return (db.select(History).where(History.instance_id == instance.id)
            .options(selectinload(History.user), selectinload(History.on_behalf_of),
                     selectinload(History.node)))


def _tasks_query(instance):
    return (db.select(Task).where(Task.instance_id == instance.id)
            .options(selectinload(Task.node), selectinload(Task.assignee_user),
                     selectinload(Task.completed_by), selectinload(Task.lock_holder)))


def history_page(instance, *, limit, after=None):
    """``limit`` entries of ``instance``'s history after the cursor ``after``, oldest first."""
    return keyset_page(_history_query(instance), History.id, limit=limit, after=after)


def latest_history(instance, *, limit, before=None):
    """The latest ``limit`` entries of ``instance``'s history (or those before ``before``), oldest first."""
    return latest_page(_history_query(instance), History.id, limit=limit, before=before)


def tasks_page(instance, *, limit, after=None):
    """``limit`` tasks of ``instance`` after the cursor ``after``, oldest first."""
    return keyset_page(_tasks_query(instance), Task.id, limit=limit, after=after)


def latest_tasks(instance, *, limit, before=None):
    """The latest ``limit`` tasks of ``instance`` (or those before ``before``), oldest first."""
    return latest_page(_tasks_query(instance), Task.id, limit=limit, before=before)
