"""What needs a supervisor: batches whose failures wait for a person, batches
that are running or paused, items whose retries are used up, and what recovery
did lately. The supervisor home and the navbar badge read it."""
from datetime import timedelta

from sqlalchemy.orm import selectinload

from portal.batches.lifecycle import retry_limit
from portal.infra.extensions import db
from portal.models import Batch, BatchEvent, BatchItem
from portal.models.base import utcnow
from portal.models.batches import FAILED_ITEM_STATUSES, OPEN_BATCH_STATUSES

RECENT = timedelta(days=7)
SHOWN = 20


def _with_failures(since):
    return db.select(Batch).where(Batch.with_errors, Batch.updated_at >= since)


def failures_count(now=None):
    """Batches that finished with failures in the last week: the navbar badge."""
    since = (now or utcnow()) - RECENT
    return db.session.execute(db.select(db.func.count()).select_from(
        _with_failures(since).subquery())).scalar()


def overview(now=None):
    """Everything the supervisor home shows, newest first, SHOWN of each at most."""
    now = now or utcnow()
    since = now - RECENT
    with_creator = selectinload(Batch.created_by), selectinload(Batch.node)
    return {
        "failed": db.session.execute(_with_failures(since).options(*with_creator)
                                     .order_by(Batch.updated_at.desc()).limit(SHOWN)
                                     ).scalars().all(),
        "active": db.session.execute(
            db.select(Batch).where(Batch.status.in_(OPEN_BATCH_STATUSES))
            .options(*with_creator).order_by(Batch.id.desc()).limit(SHOWN)).scalars().all(),
        "at_limit": db.session.execute(
            db.select(BatchItem).where(BatchItem.status.in_(FAILED_ITEM_STATUSES),
                                       BatchItem.retry_count >= retry_limit(),
                                       BatchItem.finished_at >= since)
            .order_by(BatchItem.finished_at.desc()).limit(SHOWN)).scalars().all(),
        "recovered": db.session.execute(
            # Recovery's own actions: events without a person, but not a batch simply finishing.
            db.select(BatchEvent).where(BatchEvent.user_id.is_(None), BatchEvent.action != "finished",
                                        BatchEvent.created_at >= since)
            .order_by(BatchEvent.id.desc()).limit(SHOWN)).scalars().all(),
    }
