"""Who may see and steer a batch."""
from flask_babel import gettext as _

from portal.extensions import db
from portal.models import Batch
from portal.workflow.errors import NotFound, UserError


def visible_batches_query(user):
    query = db.select(Batch)
    if not user.is_supervisor:
        query = query.where(Batch.created_by_id == user.id)
    return query


def visible_batch(user, batch_id):
    """The batch if ``user`` may see it; NotFound otherwise (same as missing)."""
    batch = db.session.get(Batch, batch_id) if isinstance(batch_id, int) else None
    if batch is None or not (user.is_supervisor or batch.created_by_id == user.id):
        raise NotFound(_("Batch not found."))
    return batch


def require_supervisor(user):
    if not user.is_supervisor:
        raise UserError(_("Only supervisors and admins may do this."))
