"""Who may see and steer a batch, and what its items may show of their tasks."""
from flask_babel import gettext as _

from portal.errors import NotFound, UserError
from portal.infra.extensions import db
from portal.models import Batch, Instance, Task
from portal.models.base import chunks, is_db_id

# An item ignored for one of these names a task its batch's creator may not
# open: it shows no title. (Rows written before "unavailable" existed say
# "gone" or "not_yours".)
UNSEEN_REASONS = ("unavailable", "gone", "not_yours")



def visible_batches_query(user):
    query = db.select(Batch)
    if not user.is_supervisor:
        query = query.where(Batch.created_by_id == user.id)
    return query


def visible_batch(user, batch_id):
    """The batch if ``user`` may see it; NotFound otherwise (same as missing)."""
    batch = db.session.get(Batch, batch_id) if is_db_id(batch_id) else None
    if batch is None or not (user.is_supervisor or batch.created_by_id == user.id):
        raise NotFound(_("Batch not found."))
    return batch


def visible_batch_or_none(user, batch_id):
    """The batch if ``user`` may see it, else None (also for a None id)."""
    try:
        return visible_batch(user, batch_id)
    except NotFound:
        return None


def may_retry(user):
    """Retrying failed items is for supervisors and admins (a creator may correct them)."""
    return user.is_supervisor


def require_may_retry(user):
    if not may_retry(user):
        raise UserError(_("Only supervisors and admins may do this."))


def task_titles(task_ids):
    """{task_id: its instance's title}."""
    titles = {}
    for chunk in chunks(list(task_ids)):
        titles.update(db.session.execute(
            db.select(Task.id, Instance.title).join(Instance, Task.instance_id == Instance.id)
            .where(Task.id.in_(chunk))).all())
    return titles


def item_titles(items):
    """{task_id: title} for the items whose task the batch's creator may open."""
    return task_titles(item.task_id for item in items
                       if item.error_kind not in UNSEEN_REASONS and is_db_id(item.task_id))
