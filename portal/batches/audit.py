"""The batch audit trail: what people and recovery did to a batch, and when it finished."""
from portal.infra.extensions import db
from portal.models import BatchEvent


def add_event(batch_id, user_id, action, detail=None):
    """One entry of the batch's audit log, in the caller's transaction (``user_id`` None:
    the portal's own doing: recovery, a batch finishing)."""
    db.session.add(BatchEvent(batch_id=batch_id, user_id=user_id, action=action, detail=detail))
