"""The batch engine's signals (``portal.events``) turned into notices and deliveries.

Each receiver runs inside the transaction that makes the event happen, in a SAVEPOINT of its own:
whatever goes wrong while recording a notice is logged and rolled back to the savepoint, and the
batch's transaction goes on (an approval never fails because a notice could not be written). A
duplicate of an event is not an error at all (``records.record`` inserts nothing).
"""
import logging

from portal import events
from portal.infra.extensions import db
from portal.models.batches import FINISHED_WITH_ERRORS
from portal.notices import delivery, outbox, records

log = logging.getLogger(__name__)


def on_batch_finished(batch, **_extra):
    kind = FINISHED_WITH_ERRORS if batch.with_errors else "finished"
    _record_safely(kind, batch.id, batch.created_by_id)


def on_batch_cancelled(batch, **_extra):
    _record_safely("cancelled", batch.id, batch.created_by_id)


def on_item_at_retry_limit(batch_id, item_id, **_extra):
    _record_safely("retry_limit", batch_id, None, item_id=item_id)


def record_event(kind, batch_id, user_id=None, item_id=0):
    """Record the event's notice and plan its deliveries; the new notice's id, or None when the
    event already had its notice."""
    user_id = user_id if user_id is not None else records.batch_creator_id(batch_id)
    round_ = records.item_round(item_id) if item_id else records.batch_round(batch_id)
    notice_id = records.record(kind, batch_id, user_id, item_id=item_id, round_=round_)
    if notice_id is None:
        return None
    delivery_ids = delivery.plan(notice_id, user_id)
    outbox.after_commit(db.session(), delivery_ids)
    return notice_id


def _record_safely(kind, batch_id, user_id, item_id=0):
    try:
        with db.session.begin_nested():
            return record_event(kind, batch_id, user_id, item_id)
    except Exception:
        log.exception("could not record the %s notice of batch %s (item %s)", kind, batch_id,
                      item_id or "-")
        return None


def connect():
    """Listen to the batch engine's events (once per process; connecting again changes nothing)."""
    events.batch_finished.connect(on_batch_finished, weak=False)
    events.batch_cancelled.connect(on_batch_cancelled, weak=False)
    events.item_at_retry_limit.connect(on_item_at_retry_limit, weak=False)
