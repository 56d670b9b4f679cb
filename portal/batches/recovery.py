"""Recovery from database state: what the periodic job does.

RQ runs a job at least once at best: a killed worker's job is noticed late, a
frozen worker can overlap a re-run, a Redis without persistence forgets
queued jobs and scheduled lanes. So the database decides what is left to do:

1. expired leases are reclaimed: the item's worker vanished, which is an
   unexpected failure, retried with backoff up to BATCH_RETRY_LIMIT
   (``lifecycle.fail_lost``);
2. items that failed for an unexpected cause in the last 24 hours and are
   still under the limit go back to pending. The runner itself only fails
   such an item at the limit, so this finds items after the limit was raised;
3. running batches with nothing left to run are closed;
4. pending or running batches with runnable items and no progress for
   BATCH_STALL_SECONDS (never started, lanes lost with Redis) are restarted;
5. running instances that wait on nothing (no pending task, nothing else the
   engine waits on) are reported and repaired from their engine state
   (``portal.workflow.engine.repair``), or reported and left when that cannot be done.

Every step re-checks its condition under a row lock and changes the row it
checked, so running it twice, or in two schedulers at once, does the work
once; each step commits its own rows (its caller, the periodic job, commits
nothing). ``recover`` returns the batches that need new lanes; the caller
(``portal.jobs.periodic``) enqueues them after the commits.

The ``now`` parameters are the moment conditions are judged against (a test
may pass a later one to let leases expire early); the times written, such as
a retry's ``next_attempt_at``, come from the real clock so workers can act on
them.
"""
import logging
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l

from portal import events
from portal.batches import item_errors, lifecycle
from portal.batches.audit import add_event
from portal.batches.runner import worker_name
from portal.infra.extensions import db
from portal.messages import N_
from portal.models import Batch, BatchItem
from portal.models.base import utcnow
from portal.models.batches import ACTIVE_BATCH_STATUSES
from portal.workflow.engine import repair

log = logging.getLogger(__name__)

# Unexpected failures older than this are left for a person to retry.
RECENT_FAILURES = timedelta(hours=24)
LEASE_EXPIRED_MSGID = N_("The worker running this item stopped before finishing it (its lease "
                         "expired).")
LEASE_EXPIRED = _l(LEASE_EXPIRED_MSGID)


def _by_recovery():
    return f"recovery@{worker_name()}"


def _lease_expired():
    """Stored as a message, so each reader reads it in their own language."""
    return item_errors.unexpected({"msgid": LEASE_EXPIRED_MSGID, "params": {}},
                                  code="lease_expired")


# --- 1. expired leases -------------------------------------------------------------

def _reclaim_one(item_id, now):
    """Reclaim one item if its lease is still expired; returns its batch id or None."""
    item = db.session.execute(
        db.select(BatchItem).where(BatchItem.id == item_id, BatchItem.status == "running",
                                   BatchItem.lease_expires_at < now)
        .with_for_update(skip_locked=True, key_share=True)
        .execution_options(populate_existing=True)).scalar_one_or_none()
    if item is None:  # finished meanwhile, reclaimed by another recovery, or still in use
        db.session.rollback()
        return None
    clock = utcnow()
    lifecycle.fail_lost(item, _lease_expired(), clock, worker=_by_recovery(),
                        started_at=item.started_at or clock)
    batch_id = item.batch_id
    db.session.commit()
    return batch_id


def expired_leases(now):
    """Ids of running items whose lease expired before ``now`` (read only)."""
    ids = db.session.execute(
        db.select(BatchItem.id).where(BatchItem.status == "running",
                                      BatchItem.lease_expires_at < now)
        .order_by(BatchItem.id)).scalars().all()
    db.session.rollback()
    return ids


def reclaim_leases(now=None):
    """Reclaim every item whose lease expired before ``now``; returns their batch ids."""
    now = now or utcnow()
    batch_ids = [_reclaim_one(item_id, now) for item_id in expired_leases(now)]
    return [batch_id for batch_id in batch_ids if batch_id is not None]


# --- 2. recent unexpected failures under the limit ----------------------------------------

def _recent_unexpected_failure(since, limit):
    """An item that failed for an unexpected cause since ``since``, under ``limit``: what
    recovery retries by itself (a person's retry, ``control``, takes any failure but one of
    the item's own values)."""
    return (BatchItem.status == "failed", BatchItem.error_kind == "unexpected",
            BatchItem.retry_count < limit, BatchItem.finished_at >= since)


def _retry_failures_of(batch_id, since, limit):
    """Retry one batch's recent unexpected failures; returns how many went back to pending."""
    batch = lifecycle.lock_batch(batch_id)
    if batch is None or batch.status == "cancelled":
        db.session.rollback()
        return 0
    failed = db.session.execute(
        db.select(BatchItem).where(BatchItem.batch_id == batch_id,
                                   *_recent_unexpected_failure(since, limit))
        .order_by(BatchItem.id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)).scalars().all()
    if not failed:
        db.session.rollback()
        return 0
    lifecycle.retry(batch, failed, utcnow(), backoff=True)
    add_event(batch.id, None, "retried", {"items": [item.id for item in failed][:1000],
                                          "count": len(failed), "automatic": True})
    db.session.commit()
    events.items_retried.send(batch_id, count=len(failed), automatic=True)
    return len(failed)


def batches_with_recent_unexpected_failures(since, limit):
    """Ids of batches with unexpected failures since ``since`` under ``limit`` (read only)."""
    ids = db.session.execute(
        db.select(BatchItem.batch_id).where(*_recent_unexpected_failure(since, limit))
        .distinct().order_by(BatchItem.batch_id)).scalars().all()
    db.session.rollback()
    return ids


def retry_unexpected_failures(now=None):
    """Failed items of an unexpected cause, finished in the last 24 h and under
    BATCH_RETRY_LIMIT, go back to pending with backoff; returns {batch id: items}."""
    now = now or utcnow()
    limit = current_app.config["BATCH_RETRY_LIMIT"]
    since = now - RECENT_FAILURES
    retried = {batch_id: _retry_failures_of(batch_id, since, limit)
               for batch_id in batches_with_recent_unexpected_failures(since, limit)}
    return {batch_id: count for batch_id, count in retried.items() if count}


# --- 3. drained batches ---------------------------------------------------------------

def finish_drained_batches():
    """Close running batches whose last item ended in a transaction that could not close them."""
    ids = db.session.execute(
        db.select(Batch.id).where(Batch.status.in_(ACTIVE_BATCH_STATUSES), Batch.pending == 0,
                                  Batch.running == 0)).scalars().all()
    db.session.rollback()
    closed = 0
    for batch_id in ids:
        batch = lifecycle.lock_batch(batch_id)
        closed += bool(batch is not None and lifecycle.finish_if_done(batch))
        db.session.commit()
    return closed


# --- 4. stalled batches ---------------------------------------------------------------

def _stalled(cutoff):
    last_seen = db.func.coalesce(Batch.progress_at, Batch.created_at)
    return (Batch.status.in_(ACTIVE_BATCH_STATUSES), Batch.pending > 0, last_seen < cutoff)


def _take_stalled(batch_id, cutoff):
    """Mark a batch as restarted if it is still stalled; True when this call did it."""
    batch = db.session.execute(
        db.select(Batch).where(Batch.id == batch_id, *_stalled(cutoff))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)).scalar_one_or_none()
    if batch is None:  # progressed, or another recovery restarted it first
        db.session.rollback()
        return False
    batch.progress_at = utcnow()
    db.session.commit()
    return True


def stalled_batches(now=None):
    """Ids of pending or running batches with runnable items and no progress for
    BATCH_STALL_SECONDS (read only)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=current_app.config["BATCH_STALL_SECONDS"])
    ids = db.session.execute(db.select(Batch.id).where(*_stalled(cutoff)).order_by(Batch.id)
                             ).scalars().all()
    db.session.rollback()
    return ids


def restart_stalled_batches(now=None):
    """Stalled batches, each taken by exactly one recovery; returns their ids."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=current_app.config["BATCH_STALL_SECONDS"])
    return [batch_id for batch_id in stalled_batches(now) if _take_stalled(batch_id, cutoff)]


# --- 5. instances that wait on nothing ---------------------------------------------------

def _repair_one(instance_id):
    """Repair one stuck instance in its own transaction; the Repair, or None if it was not stuck."""
    try:
        result = repair.repair_instance(instance_id)
    except Exception as exc:  # noqa: BLE001 - one instance must not stop the pass
        db.session.rollback()
        log.exception("instance %s waits on nothing and its repair failed", instance_id)
        return repair.Repair(instance_id, False, reason=f"{type(exc).__name__}: {exc}")
    if result is None:  # moved on meanwhile, or being moved on now
        db.session.rollback()
        return None
    if not result.repaired:
        db.session.rollback()
        log.error("instance %s is running and waits on nothing; not repaired: %s", instance_id, result.reason)
        return result
    db.session.commit()
    log.warning("instance %s was running and waited on nothing; repaired: now %s, tasks opened at %s",
                instance_id, result.status, result.opened or "none")
    return result


# Each repair is an engine run under its instance's lock: a pass takes this many at most, the next
# pass the following ones, so a defect that left thousands stuck never makes one pass long.
STUCK_INSTANCES_PER_PASS = 100


def repair_stuck_instances():
    """Running instances that wait on nothing, repaired where the engine can move them on;
    returns {"repaired": n, "unrepaired": n}. An instance left unrepaired is found, reported and counted
    again on every pass, until a person deals with it."""
    ids = repair.stuck_instance_ids(STUCK_INSTANCES_PER_PASS)
    db.session.rollback()
    counts = {"repaired": 0, "unrepaired": 0}
    for instance_id in ids:
        result = _repair_one(instance_id)
        if result is not None:
            counts["repaired" if result.repaired else "unrepaired"] += 1
    for outcome, count in counts.items():
        if count:
            events.stuck_instances.send(outcome, count=count)
    return counts


# --- one pass -----------------------------------------------------------------------

def recover(now=None):
    """One recovery pass. Returns counts and ``restart``: the batches that need lanes."""
    now = now or utcnow()
    reclaimed = reclaim_leases(now)
    retried = retry_unexpected_failures(now)
    closed = finish_drained_batches()
    restarted = restart_stalled_batches(now)
    stuck = repair_stuck_instances()
    for kind, count in (("reclaimed", len(reclaimed)), ("retried", sum(retried.values())),
                        ("closed", closed), ("stalled", len(restarted))):
        if count:
            events.recovery_acted.send(kind, count=count)
    return {"reclaimed": len(reclaimed), "retried": sum(retried.values()), "closed": closed,
            "stalled": len(restarted), "stuck_repaired": stuck["repaired"],
            "stuck_unrepaired": stuck["unrepaired"],
            "restart": sorted(set(reclaimed) | set(retried) | set(restarted))}
