"""What the batch pages list: a user's batches with filters, the choices for
those filters, one page of a batch's items, and its audit log."""
from sqlalchemy.orm import selectinload

from portal.batches.access import visible_batches_query
from portal.infra.extensions import db
from portal.models import Batch, BatchEvent, BatchItem, BatchItemAttempt, Node, Task, User
from portal.models.batches import (
    BATCH_STATUSES, FAILED_ITEM_STATUSES, FINISHED_WITH_ERRORS, ITEM_STATUSES, item_statuses_of)
from portal.infra.paging import EMPTY, keyset_page

PAGE_SIZE = 50
EVENTS_SHOWN = 100

# Item filter on the batch page -> the item statuses it shows.
ITEM_FILTERS = {name: item_statuses_of(name)
                for name in ("pending", "running", "success", "failed", "ignored", "cancelled")}


def batches_page(user, *, status=None, node_id=None, creator_id=None, after=None, before=None):
    """A page of the batches ``user`` may see, newest first.

    ``status`` may also be FINISHED_WITH_ERRORS; ``creator_id`` narrows only
    for supervisors and admins (others see their own batches anyway).
    """
    query = visible_batches_query(user).options(
        selectinload(Batch.node).selectinload(Node.process), selectinload(Batch.created_by))
    if status == FINISHED_WITH_ERRORS:
        query = query.where(Batch.with_errors)
    elif status in BATCH_STATUSES:
        query = query.where(Batch.status == status)
    if node_id:
        query = query.where(Batch.node_id == node_id)
    if creator_id and user.is_supervisor:
        query = query.where(Batch.created_by_id == creator_id)
    return keyset_page(query, Batch.id, limit=PAGE_SIZE, after=after, before=before,
                       descending=True)


def filter_choices(user):
    """(nodes, creators) that the batches ``user`` may see refer to; creators
    only for supervisors and admins."""
    visible = visible_batches_query(user).subquery()
    nodes = db.session.execute(
        db.select(Node).where(Node.id.in_(db.select(visible.c.node_id)))
        .order_by(Node.name, Node.id)).scalars().all()
    creators = []
    if user.is_supervisor:
        creators = db.session.execute(
            db.select(User).where(User.id.in_(db.select(Batch.created_by_id)))
            .order_by(User.username)).scalars().all()
    return nodes, creators


def _item_id_bounds(batch_id):
    """(first, last) item id of a batch, or None when it has no items.

    Read as one min and one max per status: each is a single step into the
    (batch_id, status, id) index, where a plain min(id) would visit every item.
    """
    ends = []
    for status in ITEM_STATUSES:
        of_status = (BatchItem.batch_id == batch_id, BatchItem.status == status)
        ends += [db.select(db.func.min(BatchItem.id)).where(*of_status).scalar_subquery(),
                 db.select(db.func.max(BatchItem.id)).where(*of_status).scalar_subquery()]
    found = [value for value in db.session.execute(db.select(*ends)).one() if value is not None]
    return (min(found), max(found)) if found else None


def first_item_id(batch_id):
    """The id of the batch's first item, or None when it has none.

    A batch's items are inserted together, in the order chosen, so an item's row in
    the batch is ``id - first_item_id + 1`` (what the pages show as
    "B20261130-000006 #3"). One min per status, as in ``_item_id_bounds``.
    """
    firsts = [db.select(db.func.min(BatchItem.id))
              .where(BatchItem.batch_id == batch_id, BatchItem.status == status).scalar_subquery()
              for status in ITEM_STATUSES]
    found = [value for value in db.session.execute(db.select(*firsts)).one() if value is not None]
    return min(found) if found else None


def items_page(batch, status_filter=None, *, after=None, before=None):
    """One page of the batch's items, optionally of one ``ITEM_FILTERS`` group.

    The id range keeps the scan inside this batch's items: without it an
    unfiltered page walks the primary key through other batches' items.
    """
    bounds = _item_id_bounds(batch.id)
    if bounds is None:
        return EMPTY
    query = (db.select(BatchItem)
             .where(BatchItem.batch_id == batch.id, BatchItem.id.between(*bounds))
             .options(selectinload(BatchItem.retried_by)))
    if status_filter in ITEM_FILTERS:
        query = query.where(BatchItem.status.in_(ITEM_FILTERS[status_filter]))
    return keyset_page(query, BatchItem.id, limit=PAGE_SIZE, after=after, before=before)


def open_failures(batch_id, *columns):
    """SELECT of ``columns`` of the batch's failed items whose task still waits
    for a decision, in item order: what its error workbook lists and what a
    corrected copy may retry. A failure whose task was decided since (by a
    correction batch, or by hand) is no longer open."""
    return (db.select(*columns).join(Task, Task.id == BatchItem.task_id)
            .where(BatchItem.batch_id == batch_id,
                   BatchItem.status.in_(FAILED_ITEM_STATUSES), Task.status == "pending")
            .order_by(BatchItem.id))


def corrections_of(batch, user):
    """The batches made from this batch's error workbook that ``user`` may see,
    oldest first."""
    return db.session.execute(visible_batches_query(user).where(
        Batch.source_batch_id == batch.id).order_by(Batch.id)).scalars().all()


def recent_events(batch):
    """The batch's audit log, newest first."""
    return db.session.execute(
        db.select(BatchEvent).where(BatchEvent.batch_id == batch.id)
        .order_by(BatchEvent.id.desc()).limit(EVENTS_SHOWN)).scalars().all()


def item_attempts(item):
    return db.session.execute(
        db.select(BatchItemAttempt).where(BatchItemAttempt.item_id == item.id)
        .order_by(BatchItemAttempt.id)).scalars().all()


def batch_item(batch, item_id):
    """The item of ``batch`` with that id, or None."""
    item = db.session.get(BatchItem, item_id)
    return item if item is not None and item.batch_id == batch.id else None
