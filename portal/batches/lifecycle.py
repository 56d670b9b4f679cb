"""The life of a batch item, in one place.

An item is made pending (its task held by the batch), ignored or
import_failed (``add_items``); a lane claims it under a lease (``claim``) and
ends it (``finish``): success, ignored or failed, its task back with people
unless it was approved. A run that was lost (an unexpected error, a worker that
vanished) goes back to pending with backoff, or fails at the retry limit
(``fail_lost``); a person's retry or recovery's automatic one (``retry``) and a
correction (``requeue_corrected``) put failed items back to pending; a cancel
ends the pending ones (``cancel_pending``). The batch finishes when its last
item ends (``finish_if_done``).

This module is the only writer of what those changes touch: the items'
status, lease and failure columns (``error_kind``, ``error_code``, ``error``,
``error_detail``, ``field_errors``; an ``item_errors.Failure`` is mapped to
them in ``_failure_columns`` only), the batch's counters, the tasks' batch
lock, and the attempt rows (tests/batches/test_lifecycle.py holds every other
module to that). They must agree for "approved at most once" and for the
counters: these move only while the batch row is locked, in the same
transaction as the item status change they count, so ``total = pending +
running + success + failed + ignored + cancelled`` holds at every commit.

Every function works inside the caller's transaction, which holds the batch
row lock (``lock_batch``) and the rows of the items it passes; the caller
commits. The times an item's change writes are the caller's ``now``: the
runner and recovery read their clocks where they decide. The runner's item transaction (``claim``,
``load_claimed``, ``finish``) runs the prebuilt statements of ``item_sql`` on
the connection it passes, since that path is taken for every item.
"""
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import insert, update

from portal import events
from portal.batches import item_sql
from portal.batches.audit import add_event
from portal.batches.destinations import destination_counts
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Node, Task
from portal.models.base import chunks, utcnow
from portal.models.batches import COUNTER_OF, OPEN_BATCH_STATUSES


def backoff_seconds(retry_count):
    """Exponential backoff with full jitter: ~2s, 4s, 8s... capped at 5 minutes."""
    return random.uniform(0.5, 1.0) * min(300, 2 ** retry_count)


def retry_limit():
    return current_app.config["BATCH_RETRY_LIMIT"]


def _failure_columns(failure, node):
    """The item columns that say why it did not succeed (``item_errors.Failure``), its
    English text made with the node's labels; ``field_errors`` only when it has them."""
    columns = {"error_kind": failure.kind, "error_code": failure.code,
               "error": failure.english(node), "error_detail": failure.detail}
    if failure.field_errors is not None:
        columns["field_errors"] = failure.field_errors
    return columns


def _record_attempt(connection, **values):
    """One run of an item, or a correction of it (``BatchItemAttempt``)."""
    connection.execute(item_sql.INSERT_ATTEMPT, values)


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


def _move(batch, old_status, new_status, count=1):
    """``count`` items went from ``old_status`` to ``new_status``: their counters follow."""
    old, new = COUNTER_OF[old_status], COUNTER_OF[new_status]
    setattr(batch, old, getattr(batch, old) - count)
    setattr(batch, new, getattr(batch, new) + count)
    batch.updated_at = utcnow()


def finish_if_done(batch, now=None):
    """Mark the batch finished once no item waits or runs; its items' destinations are counted then,
    once, so that the batch page never counts over a large batch's items."""
    if batch.pending == 0 and batch.running == 0 and batch.status in OPEN_BATCH_STATUSES:
        batch.status = "finished"
        batch.finished_at = now or utcnow()
        db.session.flush()
        batch.destinations = [list(pair) for pair in destination_counts(batch)]
        add_event(batch.id, None, "finished", {"success": batch.success, "failed": batch.failed,
                                               "ignored": batch.ignored, "cancelled": batch.cancelled})
        events.batch_finished.send(batch)
        return True
    return False


def _reopen(batch, now):
    """A batch that got items back to run is running again."""
    if batch.status == "finished":
        batch.status, batch.finished_at = "running", None
    batch.progress_at = now


# --- the tasks a batch holds ------------------------------------------------------------

def _hold_tasks(batch, task_ids, *, only_free=False):
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


def _release_task(connection, task_id, batch_id):
    """The task of an item that ended without approving it goes back to people,
    if the batch still holds it."""
    connection.execute(item_sql.UNLOCK_TASK, {"task_id": task_id, "batch_id": batch_id})


# --- a new batch's items ----------------------------------------------------------------

def add_items(batch, node, entries, now):
    """Insert a new batch's items, hold the tasks of its pending ones and set its counters.

    ``entries``: ``(columns, status, failure)`` per item, in the chosen order: the
    item's own columns (``task_id``, ``source_ref``, ``decision``), "pending",
    "ignored" or "import_failed", and for the last two why (an ``item_errors.Failure``;
    one Failure may serve many items, its English text is then made once).
    """
    failure_columns = {}    # id(failure) -> (failure, its columns); the failure kept, its id unique
    rows, held = [], []
    counts = {"pending": 0, "ignored": 0, "failed": 0}
    for columns, status, failure in entries:
        row = {"batch_id": batch.id, **columns, "retry_count": 0, "attempts": 0, "status": status}
        if failure is None:
            held.append(columns["task_id"])
        else:
            if id(failure) not in failure_columns:
                failure_columns[id(failure)] = (failure, _failure_columns(failure, node))
            row.update(finished_at=now, **failure_columns[id(failure)][1])
        counts[COUNTER_OF[status]] += 1
        rows.append(row)
    if rows:
        db.session.execute(insert(BatchItem), rows)
    _hold_tasks(batch, held)
    batch.total = len(rows)
    batch.pending, batch.ignored, batch.failed = counts["pending"], counts["ignored"], counts["failed"]


# --- the runner's item transaction --------------------------------------------------------

@dataclass
class Claim:
    item_id: int
    token: str


def open_batch(connection, batch_id, now):
    """Lock the batch row for a lane's first claim, starting the batch if it was pending;
    what ``claim`` needs to know of it, or None when there is no such batch."""
    return connection.execute(item_sql.OPEN_BATCH, {"batch_id": batch_id, "now": now}).one_or_none()


def claim(connection, batch_id, counters, now):
    """Claim the next due pending item while this transaction holds the batch
    row, if the batch runs and the cap leaves a slot; the Claim or None.

    ``counters``: the batch row as ``open_batch`` or ``finish`` returned it.
    """
    if counters.status != "running" or counters.running >= counters.concurrency:
        return None
    token = uuid.uuid4().hex
    expires = now + timedelta(seconds=current_app.config["BATCH_LEASE_SECONDS"])
    item_id = connection.execute(item_sql.CLAIM_NEXT, {"of_batch": batch_id, "now": now,
                                                       "token": token, "expires": expires}).scalar()
    if item_id is None:
        return None
    connection.execute(item_sql.COUNT_CLAIM, {"batch_id": batch_id, "now": now})
    return Claim(item_id, token)


def load_claimed(connection, claim):
    """The claimed item, locked, if the lease is still ours (with its batch creator's
    disabled flag, read fresh); None when someone else holds or ended it."""
    return connection.execute(item_sql.LOAD_CLAIMED,
                              {"item_id": claim.item_id, "token": claim.token}).one_or_none()


def finish(connection, item, status, failure, now, *, node_id, worker, started):
    """End a claimed item (``load_claimed``) with ``status`` and, unless it succeeded, its
    ``failure``: its task back with people unless it was approved, one attempt row (``worker``,
    ``started`` by ``time.monotonic``), and the batch counters moved; returns the batch row as
    ``claim`` needs it (status, pending, running, concurrency)."""
    columns = {} if failure is None else _failure_columns(failure, db.session.get(Node, node_id))
    if status != "success":
        _release_task(connection, item.task_id, item.batch_id)
    if status == "failed" and item.retry_count >= retry_limit():
        events.item_at_retry_limit.send(item.batch_id, item_id=item.id, task_id=item.task_id)
    connection.execute(item_sql.RECORD_OUTCOME, {
        "item_id": item.id, "outcome": status, "now": now,
        **{param: columns.get(column) for column, param in item_sql.OUTCOME_PARAMS.items()}})
    _record_attempt(connection, item_id=item.id, batch_id=item.batch_id, worker=worker,
                    started_at=item.started_at, finished_at=now,
                    duration_ms=int((time.monotonic() - started) * 1000), outcome=status,
                    error=columns.get("error"), error_detail=columns.get("error_detail"),
                    retried_by_id=None)
    return connection.execute(item_sql.count_outcome(status),
                              {"batch_id": item.batch_id, "now": now}).one()


# --- items back to pending, or failed for good ---------------------------------------------

def _requeue(batch, item, now, *, retried_by=None, backoff=False):
    """A failed or lost item back to pending as one more retry (see ``retry``)."""
    _move(batch, item.status, "pending")
    item.status, item.retry_count, item.finished_at = "pending", item.retry_count + 1, None
    item.next_attempt_at = (now + timedelta(seconds=backoff_seconds(item.retry_count))
                            if backoff else None)
    if retried_by is not None:
        item.retried_by_id, item.retried_at = retried_by.id, now


def fail_lost(item, failure, now, *, worker, started_at):
    """A running item whose run was lost (an unexpected error, a vanished
    worker; ``failure`` an ``item_errors.Failure`` that says which): the run is
    recorded as an attempt (by ``worker``, since ``started_at``), and the item goes
    back to pending with backoff, or fails once it used up its retries, its task
    then back with people. The caller holds the item row."""
    _record_attempt(db.session.connection(), item_id=item.id, batch_id=item.batch_id,
                    worker=worker, started_at=started_at, finished_at=now, outcome="error",
                    error=failure.english(None), error_detail=failure.detail)
    batch = lock_batch(item.batch_id)
    item.lease_token, item.lease_expires_at = None, None
    for column, value in _failure_columns(failure, batch.node).items():
        setattr(item, column, value)
    if item.retry_count < retry_limit():
        _requeue(batch, item, now, backoff=True)
        events.items_retried.send(batch.id, count=1, automatic=True)
    else:
        _move(batch, item.status, "failed")
        item.status, item.finished_at = "failed", now
        _release_task(db.session.connection(), item.task_id, batch.id)
        events.item_at_retry_limit.send(batch.id, item_id=item.id, task_id=item.task_id)
        finish_if_done(batch, now)
    batch.progress_at = now


def retry(batch, items, now, *, retried_by=None, backoff=False):
    """Failed items back to pending as one more retry each, their tasks taken back if they
    are still pending and nobody took them meanwhile, the batch running again.

    ``retried_by``: the person who asked (the items run at once); ``backoff``: an
    automatic retry, each item due after ``backoff_seconds``.
    """
    for item in items:
        _requeue(batch, item, now, retried_by=retried_by, backoff=backoff)
    _hold_tasks(batch, [item.task_id for item in items], only_free=True)
    if items:
        _reopen(batch, now)


def requeue_corrected(batch, item, decision, corrected_by, now, *, previous_decision):
    """A failed item runs again with the new ``decision`` a person gave it; the failure it
    had and ``previous_decision`` stay in its attempt history (outcome "corrected")."""
    _record_attempt(db.session.connection(), item_id=item.id, batch_id=batch.id, worker=None,
                    started_at=now, finished_at=now, outcome="corrected", error=item.error,
                    error_detail=item.error_detail, retried_by_id=corrected_by.id,
                    previous_decision=previous_decision)
    item.decision = decision
    item.field_errors = None
    retry(batch, [item], now, retried_by=corrected_by)


def cancel_pending(batch, now):
    """The batch's pending items are cancelled and their tasks go back to people; returns
    how many. Running items finish as they would."""
    pending = db.select(BatchItem.task_id).where(BatchItem.batch_id == batch.id,
                                                 BatchItem.status == "pending")
    db.session.execute(update(Task).where(Task.id.in_(pending), Task.lock_batch_id == batch.id)
                       .values(lock_holder_id=None, lock_batch_id=None, lock_expires_at=None)
                       .execution_options(synchronize_session=False))
    count = db.session.execute(
        update(BatchItem).where(BatchItem.batch_id == batch.id, BatchItem.status == "pending")
        .values(status="cancelled", error_kind="cancelled", finished_at=now)
        .execution_options(synchronize_session=False)).rowcount
    _move(batch, "pending", "cancelled", count)
    return count
