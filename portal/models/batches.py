"""Batches: a master row (batch) and one detail row per task (item), with the
attempts of each item, an audit trail of batch actions and stored files.

Counters on the batch row are changed only in the same transaction as the
item status they count (``portal.batches.lifecycle``), so ``total = pending +
running + success + failed + ignored + cancelled`` holds at every commit.

The statuses and the sets of them that rules go by are defined here, once; the
API's enums and the pages' filters are made from them.
"""
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, and_
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.infra.extensions import db
from portal.models.base import utcnow

BATCH_STATUSES = ("pending", "running", "paused", "finished", "cancelled")
# Items to run or running: lanes work on the batch, recovery watches it, it may be paused.
ACTIVE_BATCH_STATUSES = ("pending", "running")
# Not ended (finished and cancelled are the ends): it may be cancelled, and it finishes
# when its last item ends.
OPEN_BATCH_STATUSES = (*ACTIVE_BATCH_STATUSES, "paused")
# The status people see of a finished batch with failed items (``Batch.with_errors``).
FINISHED_WITH_ERRORS = "finished_with_errors"
ITEM_STATUSES = ("pending", "running", "success", "ignored", "failed", "import_failed", "cancelled")
# An item that failed to import counts as failed everywhere: counters, filters,
# retries and the error workbook.
FAILED_ITEM_STATUSES = ("failed", "import_failed")
# Item status -> the batch counter that holds it.
COUNTER_OF = {status: "failed" if status in FAILED_ITEM_STATUSES else status
              for status in ITEM_STATUSES}
MODES = ("form", "single", "per_instance")
# The most items of one batch that run at once (pages, API, imports).
MAX_CONCURRENCY = 50


def item_statuses_of(status):
    """The item statuses a filter on ``status`` shows: "failed" includes "import_failed"."""
    return FAILED_ITEM_STATUSES if status == "failed" else (status,)


class Batch(db.Model):
    __tablename__ = "batch"
    __table_args__ = (
        Index("ix_batch_status_updated", "status", "updated_at"),
        Index("ix_batch_creator_id", "created_by_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(String(40), unique=True)
    # The process version the batch was made for (its node belongs to it).
    process_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"))
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    mode: Mapped[str] = mapped_column(String(20), default="form")
    action: Mapped[str | None] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    shared_form: Mapped[dict | None] = mapped_column(JSON)  # form mode: every item's form
    # Where the successful items went, [[label, count]], counted when the batch finishes
    # (portal.batches.destinations); None before.
    destinations: Mapped[list | None] = mapped_column(JSON)
    filter: Mapped[dict | None] = mapped_column(JSON)
    concurrency: Mapped[int] = mapped_column(default=5)
    total: Mapped[int] = mapped_column(default=0)
    pending: Mapped[int] = mapped_column(default=0)
    running: Mapped[int] = mapped_column(default=0)
    success: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    ignored: Mapped[int] = mapped_column(default=0)
    cancelled: Mapped[int] = mapped_column(default=0)
    source_batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Last time an item of this batch ended or was claimed: stall detection.
    progress_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error_file_id: Mapped[int | None] = mapped_column(ForeignKey("batch_file.id", use_alter=True))

    node = relationship("Node")
    created_by = relationship("User")
    error_file = relationship("BatchFile", foreign_keys=[error_file_id], post_update=True)

    @hybrid_property
    def with_errors(self):
        """Finished with failed items: a status of its own for people (FINISHED_WITH_ERRORS)."""
        return self.status == "finished" and self.failed > 0

    @with_errors.inplace.expression
    @classmethod
    def _with_errors_expression(cls):
        return and_(cls.status == "finished", cls.failed > 0)

    @property
    def is_active(self):
        return self.status in ACTIVE_BATCH_STATUSES

    @property
    def shared_decision(self):
        """What every item without a decision of its own is asked to do."""
        return {"action": self.action, "comment": self.comment, "form": self.shared_form or {}}


class BatchItem(db.Model):
    __tablename__ = "batch_item"
    __table_args__ = (
        Index("ix_batch_item_batch_status", "batch_id", "status", "id"),
        Index("ix_batch_item_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"))
    # No foreign key: an item may name a task id that does not exist (ignored).
    task_id: Mapped[int] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # Why an item did not succeed (``portal.batches.item_errors``): ``error`` in English,
    # ``error_code`` for scripts, ``error_detail`` and ``field_errors`` ({field key: message})
    # as message data (``portal.messages``) rendered for each reader.
    error: Mapped[str | None] = mapped_column(Text)
    # validation|user|unexpected for failed items; the reason code for ignored ones
    error_kind: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_detail: Mapped[object | None] = mapped_column(JSON)
    field_errors: Mapped[dict | None] = mapped_column(JSON)
    retry_count: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    # This item's own {"action", "comment", "form"} (imports); None: the batch's.
    decision: Mapped[dict | None] = mapped_column(JSON)
    source_ref: Mapped[str | None] = mapped_column(String(40))  # row number or sheet name
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    retried_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    retried_at: Mapped[datetime | None]

    batch = relationship(Batch)
    retried_by = relationship("User")


class BatchItemAttempt(db.Model):
    """One run of one item: when, where, how long, and how it ended."""

    __tablename__ = "batch_item_attempt"
    # The batch page's time left counts a batch's runs of the last minutes.
    __table_args__ = (Index("ix_batch_item_attempt_batch_finished", "batch_id", "finished_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("batch_item.id"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), index=True)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]
    outcome: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)      # in English (older rows: as written)
    error_detail: Mapped[object | None] = mapped_column(JSON)   # the message as data
    retried_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    # A correction: the decision the item held before (outcome "corrected").
    previous_decision: Mapped[dict | None] = mapped_column(JSON)

    retried_by = relationship("User")


class BatchEvent(db.Model):
    """Audit trail of batch actions: created, paused, resumed, cancelled, retried..."""

    __tablename__ = "batch_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    action: Mapped[str] = mapped_column(String(30))
    detail: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user = relationship("User")


class BatchFile(db.Model):
    """A file kept in the database so every web and worker process can serve it."""

    __tablename__ = "batch_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # error
    filename: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
