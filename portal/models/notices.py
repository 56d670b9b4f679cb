"""Completion notices: one row per batch event for the batch's creator (in-app), the channels each
user wants besides (e-mail, webhooks), their webhook endpoints, and every delivery with its attempts.

A notice names its event by ``(kind, batch_id, item_id, round)`` under a unique constraint, so a
finishing transaction that is retried, or two workers that both try to record it, leave one row:

- ``item_id`` is the item for ``retry_limit`` and 0 for the batch's own events (a real value, not
  NULL, because a unique constraint treats NULLs as all different);
- ``round`` tells apart events that happen again for real: a finished batch that is retried or
  corrected finishes again (its count of "retried"/"corrected" audit events has grown), and an item
  retried after a correction may reach the limit again (its ``retry_count`` has grown).
"""
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.infra.extensions import db
from portal.models.base import utcnow

NOTICE_KINDS = ("finished", "finished_with_errors", "cancelled", "retry_limit")
CHANNELS = ("email", "webhook")
# pending: waits for its (next) attempt; delivered: sent, never sent again; failed: gave up after
# the last attempt; skipped: the channel was switched off or the endpoint removed before it was sent.
DELIVERY_STATUSES = ("pending", "delivered", "failed", "skipped")
# The columns that name one event (the unique constraint, and ON CONFLICT's target).
EVENT_COLUMNS = ("kind", "batch_id", "item_id", "round")


class Notice(db.Model):
    __tablename__ = "notice"
    __table_args__ = (
        UniqueConstraint(*EVENT_COLUMNS, name="uq_notice_event"),
        Index("ix_notice_user_id_id", "user_id", "id"),
        Index("ix_notice_user_id_read_at", "user_id", "read_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    # No foreign key: 0 stands for "the batch itself".
    item_id: Mapped[int] = mapped_column(default=0, server_default="0")
    round: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]

    user = relationship("User")
    batch = relationship("Batch")


class NoticePreference(db.Model):
    """A user's channels besides the in-app notice (always on). No row: the defaults below."""

    __tablename__ = "notice_preference"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    email_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    email_address: Mapped[str | None] = mapped_column(String(254))
    webhook_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(db.Model):
    """A URL a user's notices are POSTed to, signed with its secret; tied to one API token when
    ``token_id`` is set (it then stops with the token). Removing one keeps its row (and delivery
    log) with ``removed_at``."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id"))
    url: Mapped[str] = mapped_column(String(2000))
    # Kept as it is: signing needs it. Shown to the user once, when the endpoint is made.
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None]

    token = relationship("ApiToken")


class NoticeDelivery(db.Model):
    """One notice to one channel target (the e-mail address, or one webhook endpoint).

    Made in the transaction that makes the notice; sent by RQ jobs after the commit. A job claims it
    (``claim_token`` until ``claimed_until``) before sending, so two jobs never send it at once, and
    a delivered one is never claimed again. ``body`` is fixed at the first attempt, so every retry
    sends the same bytes (and the same signature)."""

    __tablename__ = "notice_delivery"
    __table_args__ = (Index("ix_notice_delivery_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notice.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoint.id"), index=True)
    # The address or URL when the delivery was made (the log shows where it went).
    target: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]
    body: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    notice = relationship(Notice)
    endpoint = relationship(WebhookEndpoint)


class NoticeDeliveryAttempt(db.Model):
    """One try of one delivery: the delivery log."""

    __tablename__ = "notice_delivery_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("notice_delivery.id"), index=True)
    attempt: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(20))  # delivered | error
    response_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int | None]

    delivery = relationship(NoticeDelivery)
