"""Deliveries of a notice by e-mail and webhook: which are made, and each attempt's bookkeeping.

A delivery is sent at least once while it can be, and never again once it succeeded:

1. ``claim`` (one short transaction): only a pending delivery that is due and not claimed by a
   live attempt is taken; the attempt counter moves and a claim token with an expiry is written.
   Two jobs of the same delivery cannot both hold it. The body is fixed at the first claim.
2. The message is sent with no transaction open (SQLite holds its write lock for a whole
   transaction; a slow SMTP server must not stall the batches).
3. ``finish`` (one short transaction): the attempt is logged; a success marks the delivery
   delivered, a failure schedules the next attempt with exponential backoff or, after
   ``WEBHOOK_MAX_ATTEMPTS``, gives up.

A worker that dies between sending and step 3 (killed, or its job stopped at the job's timeout)
leaves a claim that expires; that attempt counted when it was claimed, so it is a failed one: the
delivery is then sent again (the receiver tells a repeat by its ``X-Portal-Delivery`` id), or
given up when it was the last. The attempt counter never passes ``WEBHOOK_MAX_ATTEMPTS``.

Times: an attempt takes at most ``attempt_seconds``; its RQ job is stopped at
``job_timeout_seconds`` (the attempt and its bookkeeping); a claim lasts ``claim_seconds``, longer
than RQ lets a job live, so no second attempt starts while the first may still send.

Commits: ``claim`` and ``finish`` commit their own short transactions (the send between them has
none open); ``plan`` writes in its caller's transaction, which commits it.
"""
import logging
import uuid
from datetime import timedelta

from flask import current_app

from portal.infra.extensions import db
from portal.models import Batch, NoticeDelivery, NoticeDeliveryAttempt, User
from portal.models.base import utcnow
from portal.notices import mail, preferences, webhook
from portal.notices.attempt import Claim

# Retry n waits BACKOFF_BASE_SECONDS * 2**(n-1), at most BACKOFF_MAX_SECONDS.
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
# A job that runs a little before its due time (clocks of two hosts) still goes ahead.
EARLY_TOLERANCE = timedelta(seconds=5)
MAX_ERROR_LENGTH = 500
# The claim and finish transactions and the job's start, on top of the attempt itself.
JOB_MARGIN_SECONDS = 30
# RQ kills a work-horse that outlives its job's timeout 60 s after it, noticed within its 30 s
# monitoring interval; and 30 s to spare.
RQ_KILL_MARGIN_SECONDS = 60 + 30 + 30
# What an attempt whose job died left in the log (the details are in the worker's log).
DIED = "the attempt did not finish: its job was stopped or its worker died"

log = logging.getLogger(__name__)


def backoff_seconds(attempts):
    """How long to wait after the ``attempts``-th failed attempt."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))


def max_attempts():
    return max(1, int(current_app.config["WEBHOOK_MAX_ATTEMPTS"]))


def attempt_seconds():
    """How long one attempt may send: a webhook's whole deadline, or (with a mail server) the
    SMTP timeout if that is longer (it bounds each SMTP exchange; a mail server that overruns
    the job's timeout makes that attempt a failed one)."""
    limit = webhook.deadline_seconds()
    if current_app.config.get("MAIL_SERVER"):
        limit = max(limit, mail.SMTP_TIMEOUT_SECONDS)
    return limit


def job_timeout_seconds():
    """RQ's timeout of a delivery job: the attempt and its bookkeeping."""
    return attempt_seconds() + JOB_MARGIN_SECONDS


def claim_seconds():
    """How long a claim lasts: longer than RQ lets the job that holds it live."""
    return job_timeout_seconds() + RQ_KILL_MARGIN_SECONDS


# --- which deliveries a notice gets --------------------------------------------------------

def plan(notice_id, user_id, now=None):
    """Make the notice's deliveries for the channels the user wants now; their ids."""
    now = now or utcnow()
    wanted = preferences.preference_of(user_id)
    rows = []
    if current_app.config.get("MAIL_SERVER") and wanted.email_enabled and wanted.email_address:
        rows.append(NoticeDelivery(notice_id=notice_id, channel="email",
                                   target=wanted.email_address))
    if wanted.webhook_enabled:
        rows.extend(NoticeDelivery(notice_id=notice_id, channel="webhook", endpoint_id=endpoint.id,
                                   target=endpoint.url)
                    for endpoint in preferences.live_endpoints(user_id, now))
    for row in rows:
        row.status, row.attempts, row.next_attempt_at, row.created_at = "pending", 0, now, now
        db.session.add(row)
    db.session.flush()
    return [row.id for row in rows]


# --- one attempt ------------------------------------------------------------------------------

def _still_wanted(delivery, now):
    """Whether the user still wants this delivery: the channel on, the endpoint live."""
    wanted = preferences.preference_of(delivery.notice.user_id)
    if delivery.channel == "email":
        return bool(current_app.config.get("MAIL_SERVER") and wanted.email_enabled
                    and wanted.email_address)
    return wanted.webhook_enabled and preferences.endpoint_is_live(delivery.endpoint, now)


def _compose(delivery):
    notice = delivery.notice
    batch = db.session.get(Batch, notice.batch_id)
    if delivery.channel == "email":
        return mail.compose(notice, batch, db.session.get(User, notice.user_id))
    return webhook.compose(notice, batch)


def _unclaimed(now):
    """A delivery no live attempt holds: never claimed, settled, or its claim expired."""
    return db.or_(NoticeDelivery.claimed_until.is_(None), NoticeDelivery.claimed_until < now)


def _give_up_when_spent(delivery_id, now):
    """Give the delivery up when its attempts are spent and none is live (its last attempt's job
    died, or the limit was lowered); True when it was given up here. The attempt whose claim
    expired is logged as failed: no finish of it came (one that still comes is logged too)."""
    spent = (NoticeDelivery.id == delivery_id, NoticeDelivery.status == "pending", _unclaimed(now),
             NoticeDelivery.attempts >= max_attempts())
    row = db.session.execute(
        db.select(NoticeDelivery.attempts, NoticeDelivery.claim_token).where(*spent)).first()
    if row is None:
        return False
    given_up = db.session.execute(
        db.update(NoticeDelivery).where(*spent)
        .values(status="failed", claim_token=None, claimed_until=None,
                last_error=DIED if row.claim_token else NoticeDelivery.last_error)
        .execution_options(synchronize_session=False)).rowcount
    if given_up and row.claim_token:
        db.session.add(NoticeDeliveryAttempt(delivery_id=delivery_id, attempt=row.attempts,
                                             outcome="error", error=DIED, at=now))
    db.session.commit()
    if given_up:
        log.warning("notice delivery %s gave up after %s attempts: %s", delivery_id,
                    row.attempts, DIED if row.claim_token else "no attempt left")
    return bool(given_up)


def claim(delivery_id, now=None):
    """Take the delivery for one attempt and commit; the Claim, or None when it is not to be sent
    now (delivered, given up, claimed by another attempt, not due, no attempt left, or no longer
    wanted)."""
    now = now or utcnow()
    if _give_up_when_spent(delivery_id, now):
        return None
    token = uuid.uuid4().hex
    taken = db.session.execute(
        db.update(NoticeDelivery)
        .where(NoticeDelivery.id == delivery_id, NoticeDelivery.status == "pending",
               _unclaimed(now), NoticeDelivery.attempts < max_attempts(),
               db.or_(NoticeDelivery.next_attempt_at.is_(None),
                      NoticeDelivery.next_attempt_at <= now + EARLY_TOLERANCE))
        .values(claim_token=token, claimed_until=now + timedelta(seconds=claim_seconds()),
                attempts=NoticeDelivery.attempts + 1)
        .execution_options(synchronize_session=False)).rowcount
    if not taken:
        db.session.rollback()
        return None
    delivery = db.session.execute(
        db.select(NoticeDelivery).where(NoticeDelivery.id == delivery_id)
        .execution_options(populate_existing=True)).scalar_one()
    if not _still_wanted(delivery, now):
        delivery.status, delivery.claim_token, delivery.claimed_until = "skipped", None, None
        delivery.attempts -= 1  # nothing was tried
        db.session.commit()
        return None
    if delivery.body is None:
        delivery.body = _compose(delivery)
    result = Claim(delivery.id, token, delivery.attempts, delivery.channel, delivery.target,
                   delivery.body, delivery.endpoint.secret if delivery.endpoint else None)
    db.session.commit()
    return result


def send(claimed):
    """Send one attempt (no transaction open); its Outcome. Never raises for a failed send."""
    if claimed.channel == "email":
        return mail.send(claimed)
    return webhook.send(claimed)


def _settle(delivery, claimed, outcome, error, now):
    """Move the delivery after one attempt; when to try again, or None."""
    if delivery.status == "failed" and outcome.delivered:
        # Given up while this attempt, its claim expired, still sent: it did arrive after all.
        delivery.status, delivery.delivered_at = "delivered", now
        return None
    if delivery.status != "pending":
        return None  # settled by another attempt after this one's claim expired
    if delivery.claim_token != claimed.token:
        if outcome.delivered:
            # This attempt's claim expired while it sent, and nobody settled the delivery since:
            # it did arrive, and must not be sent again.
            delivery.status, delivery.delivered_at = "delivered", now
        return None
    delivery.claim_token, delivery.claimed_until = None, None
    if outcome.delivered:
        delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
        return None
    delivery.last_error = error
    if delivery.attempts >= max_attempts():
        delivery.status = "failed"
        return None
    delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
    return delivery.next_attempt_at


def finish(claimed, outcome, now=None):
    """Log the attempt and settle the delivery, and commit; ``(when, attempt)`` of the next
    attempt, or None when there is none."""
    now = now or utcnow()
    error = (outcome.error or "")[:MAX_ERROR_LENGTH] or None
    delivery = db.session.execute(
        db.select(NoticeDelivery).where(NoticeDelivery.id == claimed.delivery_id)
        .with_for_update().execution_options(populate_existing=True)).scalar_one()
    db.session.add(NoticeDeliveryAttempt(
        delivery_id=claimed.delivery_id, attempt=claimed.attempt,
        outcome="delivered" if outcome.delivered else "error",
        response_code=outcome.response_code, error=error, at=now, duration_ms=outcome.duration_ms))
    retry_at = _settle(delivery, claimed, outcome, error, now)
    next_attempt = delivery.attempts + 1
    db.session.commit()
    return (retry_at, next_attempt) if retry_at is not None else None
