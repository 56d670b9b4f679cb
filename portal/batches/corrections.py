"""Correct and retry: an item that failed for its own values (a validation
error, a row that did not import) gets new values from a person and runs again.

Retrying such an item as it is would fail the same way until the retry limit;
a correction re-validates the new decision against the node first, keeps the
old one in the item's attempt history, and puts the item back to pending.
The batch's creator, supervisors and admins may correct (whoever may see the
batch, ``access.visible_batch``). The item still runs as the creator's, and the
instance's history names the corrector as the one who decided, for the creator.
"""
from flask_babel import gettext as _

from portal.batches import lifecycle, own_values
from portal.batches.audit import add_event
from portal.batches.control import DATA_ERROR, batch_accepts_retries
from portal.errors import Conflict, NotFound
from portal.infra.extensions import db
from portal.models import BatchItem
from portal.models.base import utcnow
from portal.models.batches import FAILED_ITEM_STATUSES
from portal.workflow.engine import validate_decision


def correctable(item, batch):
    """Whether ``item`` failed for its values in a batch that still runs items."""
    return (item.status in FAILED_ITEM_STATUSES and item.error_kind == DATA_ERROR
            and batch_accepts_retries(batch))


def current_decision(item, batch):
    """What the item was asked to do: its own decision (imports) or the batch's."""
    return item.decision or batch.shared_decision


def decision_to_correct(item, batch):
    """What the correction form shows: the item's decision over its task's own values (the
    fields a shared form left to each task hold the task's value, as the item ran with it)."""
    own = own_values.by_task(batch.node, [item.task_id]).get(item.task_id, {})
    return own_values.decision_over_own(batch.node, current_decision(item, batch), own)


def correct(batch, user, item_id, action, comment, form):
    """Validate the new decision and run the item again with it; returns the item.

    ValidationFailed (nothing written) when the new values are still wrong;
    Conflict when the item is not a correctable failure any more."""
    batch = lifecycle.lock_batch(batch.id)
    item = db.session.execute(
        db.select(BatchItem).where(BatchItem.id == item_id, BatchItem.batch_id == batch.id)
        .with_for_update(key_share=True)).scalar_one_or_none()
    if item is None:
        raise NotFound(_("Item not found."))
    if not correctable(item, batch):
        raise Conflict(_("This item is not waiting for a correction any more."))
    cleaned = validate_decision(batch.node, action, comment, form)
    # Who chose these values: the instance's history names them (on behalf of the creator).
    decision = {"action": action, "comment": comment or None, "form": cleaned,
                "decided_by": user.id}
    lifecycle.requeue_corrected(batch, item, decision, user, utcnow(),
                                previous_decision=current_decision(item, batch))
    add_event(batch.id, user.id, "corrected", {"items": [item.id], "count": 1})
    return item
