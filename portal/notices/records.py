"""Recording a batch event as its creator's notice, exactly once, inside the event's transaction.

The batch engine sends its signals inside the transaction that makes the event happen; the notice
row (and its deliveries) commit or roll back with it. Sending again (a retried transaction, a second
worker, recovery closing a batch a worker also closes) is harmless: the row is looked for first, and
the insert itself is ``INSERT ... ON CONFLICT DO NOTHING`` on the event's unique constraint, so a
concurrent insert of the same event waits for the other transaction and then inserts nothing,
rather than failing the batch's transaction with a duplicate key error.
"""
from sqlalchemy.dialects import postgresql, sqlite

from portal.infra.extensions import db
from portal.models import Batch, BatchEvent, BatchItem, Notice
from portal.models.base import utcnow
from portal.models.notices import EVENT_COLUMNS

# Audit events that put a batch back to work: each one means a later finish is a new event.
REOPENING_ACTIONS = ("retried", "corrected")


def batch_round(batch_id):
    """How many times the batch was put back to work so far: the same in every transaction that
    records one finish (it reads committed rows under the batch row lock), larger after a retry."""
    return db.session.execute(
        db.select(db.func.count()).select_from(BatchEvent)
        .where(BatchEvent.batch_id == batch_id, BatchEvent.action.in_(REOPENING_ACTIONS))).scalar()


def item_round(item_id):
    """The item's retry count: a corrected item that fails again at the limit is a new event."""
    return db.session.execute(
        db.select(BatchItem.retry_count).where(BatchItem.id == item_id)).scalar() or 0


def batch_creator_id(batch_id):
    # Read as a column, not through the identity map: a batch lane keeps objects loaded across
    # commits (expire_on_commit off), and the creator is all that is needed.
    return db.session.execute(db.select(Batch.created_by_id).where(Batch.id == batch_id)).scalar()


def _insert_once(values):
    """INSERT the notice unless its event is recorded; its id, or None when it already was."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (insert(Notice).values(**values)
                 .on_conflict_do_nothing(index_elements=list(EVENT_COLUMNS))
                 .returning(Notice.id))
    return db.session.execute(statement).scalar()


def record(kind, batch_id, user_id, item_id=0, round_=0):
    """The new notice's id, or None when this event already has its notice."""
    event = {"kind": kind, "batch_id": batch_id, "item_id": item_id, "round": round_}
    known = db.session.execute(db.select(Notice.id).filter_by(**event)).scalar()
    if known is not None:
        return None
    return _insert_once({**event, "user_id": user_id, "created_at": utcnow()})


# --- what the pages read and change ------------------------------------------------------------

def unread_count(user):
    return db.session.execute(
        db.select(db.func.count()).select_from(Notice)
        .where(Notice.user_id == user.id, Notice.read_at.is_(None))).scalar()


def notices_query(user):
    return db.select(Notice).where(Notice.user_id == user.id)


def own_notice(user, notice_id):
    """The user's notice, or None (someone else's is not told apart from a missing one)."""
    notice = db.session.get(Notice, notice_id)
    return notice if notice is not None and notice.user_id == user.id else None


def mark_read(notice, now=None):
    if notice.read_at is None:
        notice.read_at = now or utcnow()


def mark_all_read(user, now=None):
    """Mark every unread notice of the user read; returns how many."""
    return db.session.execute(
        db.update(Notice).where(Notice.user_id == user.id, Notice.read_at.is_(None))
        .values(read_at=now or utcnow())
        .execution_options(synchronize_session=False)).rowcount
