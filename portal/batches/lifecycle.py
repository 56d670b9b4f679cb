"""The life of a batch item, in one place: every change of an item's status and
the counters, task locks and failure columns that go with it.

A failed item goes back to pending by a person's retry (``control.retry``) or
by recovery's automatic one; a running item whose run was lost goes back to
pending with backoff, or fails at its retry limit (``retry_lost_run``, used by
the runner and by recovery). A batch takes its tasks at creation and again on
retry, and gives one back when its item ends without approving it. These
changes must agree for "approved at most once" and for the counters to hold,
so every caller goes through here.

Counters move only through ``move`` while the batch row is locked, in the same
transaction as the item status change they count, so ``total = pending +
running + success + failed + ignored + cancelled`` holds at every commit.

Every function works inside the caller's transaction, which holds the batch
row lock (``lock_batch``) and the rows of the items it passes; the caller
commits.
"""
import random
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

from portal import events
from portal.batches import item_sql
from portal.batches.audit import add_event
from portal.batches.destinations import destination_counts
from portal.extensions import db
from portal.models import Batch, BatchItem, Task
from portal.models.base import chunks, utcnow
from portal.models.batches import COUNTER_OF


def backoff_seconds(retry_count):
    """Exponential backoff with full jitter: ~2s, 4s, 8s... capped at 5 minutes."""
    return random.uniform(0.5, 1.0) * min(300, 2 ** retry_count)


def retry_limit():
    return current_app.config["BATCH_RETRY_LIMIT"]


# --- the batch row ------------------------------------------------------------------

def lock_batch(batch_id):
    """Lock the batch row for this transaction.

    FOR NO KEY UPDATE on PostgreSQL: rows inserted meanwhile with a foreign key
    to the batch (attempts, events) take KEY SHARE locks, which FOR UPDATE
    would conflict with, deadlocking two item transactions of one batch.
    """
    return db.session.execute(
        db.select(Batch).where(Batch.id == batch_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)).scalar_one_or_none()


def move(batch, old_status, new_status, count=1):
    old, new = COUNTER_OF[old_status], COUNTER_OF[new_status]
    setattr(batch, old, getattr(batch, old) - count)
    setattr(batch, new, getattr(batch, new) + count)
    batch.updated_at = utcnow()


def finish_if_done(batch, now=None):
    """Mark the batch finished once no item waits or runs; its items' destinations are counted then,
    once, so that the batch page never counts over a large batch's items."""
    if batch.pending == 0 and batch.running == 0 and batch.status in ("pending", "running", "paused"):
        batch.status = "finished"
        batch.finished_at = now or utcnow()
        db.session.flush()
        batch.destinations = [list(pair) for pair in destination_counts(batch)]
        add_event(batch.id, None, "finished", {"success": batch.success, "failed": batch.failed,
                                               "ignored": batch.ignored, "cancelled": batch.cancelled})
        events.batch_finished.send(batch)
        return True
    return False


# --- the tasks a batch holds ------------------------------------------------------------

def hold_tasks(batch, task_ids, *, only_free=False):
    """Lock the tasks to the batch (held by its creator, no expiry).

    At creation the tasks were checked under lock just before; on a retry
    (``only_free``) a task is taken back only if it is still pending and
    nobody took it meanwhile.
    """
    for chunk in chunks(list(task_ids)):
        condition = [Task.id.in_(chunk)]
        if only_free:
            condition += [Task.status == "pending", Task.lock_holder_id.is_(None)]
        db.session.execute(
            update(Task).where(*condition)
            .values(lock_holder_id=batch.created_by_id, lock_batch_id=batch.id,
                    lock_expires_at=None)
            .execution_options(synchronize_session=False))


def release_task(task_id, batch_id):
    """The task of an item that ended without approving it goes back to people,
    if the batch still holds it."""
    db.session.execute(item_sql.UNLOCK_TASK, {"task_id": task_id, "batch_id": batch_id})


def release_tasks_of_pending(batch):
    """Give back the tasks of the batch's pending items (a cancel)."""
    pending = db.select(BatchItem.task_id).where(BatchItem.batch_id == batch.id,
                                                 BatchItem.status == "pending")
    db.session.execute(update(Task).where(Task.id.in_(pending), Task.lock_batch_id == batch.id)
                       .values(lock_holder_id=None, lock_batch_id=None, lock_expires_at=None)
                       .execution_options(synchronize_session=False))


# --- items back to pending, or failed for good ---------------------------------------------

def requeue(batch, item, now, *, retried_by=None, backoff=False):
    """A failed or lost item back to pending as one more retry.

    ``retried_by``: the person who asked (runs at once); ``backoff``: an
    automatic retry, due after ``backoff_seconds``.
    """
    move(batch, item.status, "pending")
    item.status, item.retry_count, item.finished_at = "pending", item.retry_count + 1, None
    item.next_attempt_at = (now + timedelta(seconds=backoff_seconds(item.retry_count))
                            if backoff else None)
    if retried_by is not None:
        item.retried_by_id, item.retried_at = retried_by.id, now


def reopen(batch, now):
    """A batch that got items back to run is running again."""
    if batch.status == "finished":
        batch.status, batch.finished_at = "running", None
    batch.progress_at = now


def retry_lost_run(item, failure, now):
    """A running item whose run was lost (an unexpected error, a vanished
    worker; ``failure`` an ``item_errors.Failure`` that says which): back to
    pending with backoff, or failed once it used up its retries, its task then
    back with people. The caller holds the item row."""
    batch = lock_batch(item.batch_id)
    item.lease_token, item.lease_expires_at = None, None
    item.error_kind, item.error_code, item.error_detail = failure.kind, failure.code, failure.detail
    item.error = failure.english(batch.node)
    if item.retry_count < retry_limit():
        requeue(batch, item, now, backoff=True)
        events.items_retried.send(batch.id, count=1, automatic=True)
    else:
        move(batch, item.status, "failed")
        item.status, item.finished_at = "failed", now
        release_task(item.task_id, batch.id)
        events.item_at_retry_limit.send(batch.id, item_id=item.id, task_id=item.task_id)
        finish_if_done(batch, now)
    batch.progress_at = now
