"""Who may see and steer a batch."""
from flask_babel import gettext as _

from portal.extensions import db
from portal.models import Batch
from portal.workflow.errors import NotFound, UserError

MAX_ID = 2**31 - 1  # id columns are 32-bit integers


def is_db_id(value):
    """A value that can be a row id (larger ones would make PostgreSQL fail)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


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


def require_supervisor(user):
    if not user.is_supervisor:
        raise UserError(_("Only supervisors and admins may do this."))
