"""Running a batch's items: the claim, the item transaction, and the lane loop.

A *lane* is one RQ job working through a batch one item at a time for a short
slice, then requeueing itself at the back of the queue so other batches get
their turn. Items are claimed in the database under the batch row lock and
only while ``running < concurrency``, so the cap holds across any number of
workers. A claim is a lease (token + expiry); an expired lease may be
reclaimed by recovery.

Each item runs in ONE transaction: lock the item and check the lease is still
ours, approve through the workflow service (which locks and re-checks the
task), record the outcome, update the counters, and claim the next item (the
writes are ``lifecycle``'s: ``load_claimed``, ``finish``, ``claim``). A second
run of the same item finds the lease gone or the item ended and does nothing,
so every item takes effect exactly once. So the runner commits (each claim,
each item), unlike the services a view calls: its caller, the lane job,
commits nothing of its own.
"""
import logging
import os
import socket
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value

from portal import events
from portal.batches import item_errors, lifecycle
from portal.errors import Conflict, NotFound, UserError, ValidationFailed
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, User
from portal.models.base import utcnow
from portal.workflow.engine import decide

log = logging.getLogger(__name__)


@dataclass
class LaneResult:
    processed: int
    more: bool             # claimable work remains: requeue a lane now
    retry_at: object       # earliest delayed retry, when only those remain
    ended: bool = False    # the batch is finished: its error workbook may have changed


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_next(batch_id):
    """Claim one item in its own transaction (the first of a lane's slice),
    starting the batch if it was pending."""
    try:
        conn = db.session.connection()
        counters = lifecycle.open_batch(conn, batch_id, utcnow())
        # The claim's time is read once this transaction holds the batch row (PostgreSQL) or the
        # write lock (SQLite): a time read before waiting for them could precede another
        # worker's finish that the counters already reflect, and the lease would start early.
        now = utcnow()
        claim = lifecycle.claim(conn, batch_id, counters, now) if counters is not None else None
        db.session.commit()
        return claim
    except Exception:
        db.session.rollback()
        raise


@dataclass(frozen=True)
class BatchDecision:
    """What a batch asks of every item; fixed at creation, so a lane reads it once."""
    batch_id: int
    creator_id: int
    action: str | None
    comment: str | None
    form: dict | None
    node_id: int

    @classmethod
    def load(cls, batch_id):
        row = db.session.execute(db.select(
            Batch.id, Batch.created_by_id, Batch.action, Batch.comment, Batch.shared_form, Batch.node_id)
            .where(Batch.id == batch_id)).one()
        return cls(*row)

    def for_item(self, own_decision):
        data = own_decision or {}
        return (data.get("action", self.action), data.get("comment", self.comment),
                data.get("form", self.form))


def _apply(item, decision):
    """Run the approval; returns (status, ``item_errors.Failure`` or None).

    ``decide`` refuses before it writes, so a refusal leaves nothing to undo
    and the outcome is recorded in the same transaction. No locale is forced:
    a refusal is stored as message data and rendered for each reader
    (``item_errors``); nothing else the approval writes depends on a language.
    """
    creator = db.session.get(User, decision.creator_id)
    # The lane keeps the creator loaded across items; whether they are still
    # enabled is read fresh in this transaction, with the item.
    set_committed_value(creator, "disabled", item.creator_disabled)
    action, comment, form = decision.for_item(item.decision)
    try:
        # The fields the item's form leaves out keep the task's own values (contract section 4).
        decide(item.task_id, creator, action, comment, form,
               batch_id=decision.batch_id, batch_item_id=item.id, keep_own=True,
               decided_by_id=(item.decision or {}).get("decided_by"))  # a correction's author
        return "success", None
    except (NotFound, Conflict) as exc:
        return "ignored", item_errors.ignored(exc.reason, exc.message)
    except ValidationFailed as exc:
        return "failed", item_errors.invalid(exc.errors)
    except UserError as exc:
        return "failed", item_errors.user_error(exc.message)


def run_claimed_item(claim, *, claim_next_item=True, decision=None):
    """Run one claimed item in one transaction; returns the next claim or None."""
    started = time.monotonic()
    try:
        conn = db.session.connection()
        item = lifecycle.load_claimed(conn, claim)
        if item is None:
            db.session.rollback()   # someone else holds or ended it: nothing to do
            return None
        decision = decision or BatchDecision.load(item.batch_id)
        status, failure = _apply(item, decision)
        now = utcnow()
        counters = lifecycle.finish(conn, item, status, failure, now, node_id=decision.node_id,
                                    worker=worker_name(), started=started)
        next_claim = (lifecycle.claim(conn, item.batch_id, counters, now)
                      if claim_next_item else None)
        if next_claim is None and counters.pending == 0 and counters.running == 0:
            lifecycle.finish_if_done(lifecycle.lock_batch(item.batch_id), now)
        db.session.commit()
        events.item_finished.send(item.batch_id, outcome=status, node_id=decision.node_id,
                                  seconds=time.monotonic() - started)
        return next_claim
    except Exception as exc:
        db.session.rollback()
        record_unexpected(claim, exc)
        return None


def record_unexpected(claim, exc):
    """An unexpected error rolled the item back: retry it later, or fail it at the limit."""
    log.exception("item %s failed unexpectedly", claim.item_id, exc_info=exc)
    try:
        item = db.session.execute(
            db.select(BatchItem).where(BatchItem.id == claim.item_id).with_for_update(key_share=True)
            .execution_options(populate_existing=True)).scalar_one_or_none()
        if item is None or item.status != "running" or item.lease_token != claim.token:
            db.session.rollback()
            return
        now = utcnow()
        # An exception's own words: technical, the same for every reader.
        failure = item_errors.unexpected(f"{type(exc).__name__}: {exc}"[:2000])
        lifecycle.fail_lost(item, failure, now, worker=worker_name(), started_at=item.started_at)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not record the failure of item %s; recovery will", claim.item_id)


def run_lane(batch_id, slice_seconds=None, others_waiting=None):
    """Work through a batch slice by slice; say whether to requeue.

    After each slice the lane goes on only while nothing else waits for a
    worker (``others_waiting()``, e.g. jobs in the queue), and for
    BATCH_LANE_MAX_SECONDS at most; then it ends, and its job
    requeues it at the back of the queue. Without ``others_waiting`` to ask,
    a lane works one slice.
    """
    config = current_app.config
    slice_seconds = config["BATCH_SLICE_SECONDS"] if slice_seconds is None else slice_seconds
    lane_deadline = time.monotonic() + config["BATCH_LANE_MAX_SECONDS"]
    processed = 0
    session = db.session()
    # Definitions, nodes and the creator do not change while a lane runs; keeping
    # them loaded across item commits spares reloading them for every item. Rows
    # that do change (items, tasks, the batch) are read with locks each time.
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    try:
        while True:
            done, out_of_time = _run_slice(batch_id, slice_seconds)
            processed += done
            if (not out_of_time or others_waiting is None or others_waiting()
                    or time.monotonic() + slice_seconds > lane_deadline):
                break
    finally:
        session.expire_on_commit = expire_on_commit
    return LaneResult(processed, *_remaining(batch_id))


def _run_slice(batch_id, slice_seconds):
    """Items until the slice is over or none is claimable: (items, slice over)."""
    deadline = time.monotonic() + slice_seconds
    claim = claim_next(batch_id)
    decision = BatchDecision.load(batch_id) if claim is not None else None
    processed, in_time = 0, True
    while claim is not None:
        in_time = time.monotonic() < deadline
        claim = run_claimed_item(claim, claim_next_item=in_time, decision=decision)
        processed += 1
    return processed, not in_time


def _remaining(batch_id):
    """(claimable work remains and a slot is free, earliest delayed retry,
    batch finished)."""
    now = utcnow()
    batch = db.session.execute(db.select(Batch).where(Batch.id == batch_id)
                               .execution_options(populate_existing=True)).scalar_one_or_none()
    if batch is None or not batch.is_active or batch.pending == 0:
        ended = batch is not None and batch.status == "finished"
        db.session.rollback()
        return False, None, ended
    due_now = (BatchItem.next_attempt_at.is_(None)) | (BatchItem.next_attempt_at <= now)
    ready = db.session.execute(db.select(BatchItem.id).where(
        BatchItem.batch_id == batch_id, BatchItem.status == "pending", due_now).limit(1)).first()
    later = db.session.execute(db.select(db.func.min(BatchItem.next_attempt_at)).where(
        BatchItem.batch_id == batch_id, BatchItem.status == "pending",
        BatchItem.next_attempt_at > now)).scalar()
    more = ready is not None and batch.running < batch.concurrency
    db.session.rollback()
    return more, later, False


def run_inline(batch_id, max_lanes=100000):
    """Run a batch to the end in this process, lane after lane; returns items processed.
    (Workers run lanes from RQ; the tests drive batches with this.)"""
    total = 0
    for _ in range(max_lanes):
        result = run_lane(batch_id, slice_seconds=3600)
        total += result.processed
        if not result.more:
            break
    return total
