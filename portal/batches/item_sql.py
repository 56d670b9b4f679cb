"""The statements of an item transaction, built once per process; private to
``portal.batches.lifecycle``, the only module that executes them.

A lane runs the same handful of statements for every item. Building an ORM
statement and passing it through the ORM's bulk-update machinery costs about
six times as much as executing a prebuilt Core statement with new parameters,
and for a batch that overhead is paid per item, on top of the approval itself.
Each statement here names its parameters with ``bindparam``; lifecycle passes
them as a dict.
"""
from functools import cache

from sqlalchemy import bindparam, case, insert, select, update

from portal.models import Batch, BatchItem, BatchItemAttempt, Task, User
from portal.models.batches import COUNTER_OF

_batch = Batch.__table__
_item = BatchItem.__table__
_task = Task.__table__
_user = User.__table__
_due = (_item.c.next_attempt_at.is_(None)) | (_item.c.next_attempt_at <= bindparam("now"))

# The claimed item, locked, provided the lease is still ours; with the
# creator's disabled flag, read fresh in the same transaction.
LOAD_CLAIMED = (
    select(_item.c.id, _item.c.batch_id, _item.c.task_id, _item.c.decision, _item.c.started_at,
           _item.c.retry_count, _user.c.disabled.label("creator_disabled"))
    .join(_batch, _batch.c.id == _item.c.batch_id)
    .join(_user, _user.c.id == _batch.c.created_by_id)
    .where(_item.c.id == bindparam("item_id"), _item.c.status == "running",
           _item.c.lease_token == bindparam("token"))
    .with_for_update(of=_item, key_share=True))

# An ended item's task goes back to manual handling, if the batch still holds it.
UNLOCK_TASK = (
    update(_task).where(_task.c.id == bindparam("task_id"),
                        _task.c.lock_batch_id == bindparam("batch_id"))
    .values(lock_holder_id=None, lock_batch_id=None, lock_expires_at=None))

# The failure columns RECORD_OUTCOME sets, each from the parameter named here (a
# bindparam may not take the name of a column its statement sets).
OUTCOME_PARAMS = {"error_kind": "kind", "error_code": "code", "error": "message",
                  "error_detail": "detail", "field_errors": "errors"}

# The outcome and, for an item that did not succeed, why (``item_errors.Failure``): its
# English text, its code and message data; all None on success.
RECORD_OUTCOME = (
    update(_item).where(_item.c.id == bindparam("item_id"))
    .values(status=bindparam("outcome"),
            **{column: bindparam(param) for column, param in OUTCOME_PARAMS.items()},
            finished_at=bindparam("now"), lease_token=None, lease_expires_at=None))

INSERT_ATTEMPT = insert(BatchItemAttempt.__table__)

# Claims the next due pending item of a batch, skipping rows other lanes hold,
# in one statement (the select as a subquery; its batch is ``of_batch``, since an
# UPDATE of batch_item keeps the name batch_id for its own column); returns its id, or nothing.
_next_pending = (
    select(_item.c.id)
    .where(_item.c.batch_id == bindparam("of_batch"), _item.c.status == "pending", _due)
    .order_by(_item.c.id).limit(1)
    .with_for_update(skip_locked=True, key_share=True))

CLAIM_NEXT = (
    update(_item).where(_item.c.id == _next_pending.scalar_subquery())
    .values(status="running", lease_token=bindparam("token"), started_at=bindparam("now"),
            lease_expires_at=bindparam("expires"), attempts=_item.c.attempts + 1)
    .returning(_item.c.id))

COUNT_CLAIM = (
    update(_batch).where(_batch.c.id == bindparam("batch_id"))
    .values(pending=_batch.c.pending - 1, running=_batch.c.running + 1,
            progress_at=bindparam("now"), updated_at=bindparam("now")))

# The batch row, locked by this UPDATE and started if it was pending (every SET
# expression sees the row as it was); returns what a claim needs to know.
_was_pending = _batch.c.status == "pending"
OPEN_BATCH = (
    update(_batch).where(_batch.c.id == bindparam("batch_id"))
    .values(status=case((_was_pending, "running"), else_=_batch.c.status),
            started_at=case((_was_pending, bindparam("now")), else_=_batch.c.started_at))
    .returning(_batch.c.status, _batch.c.pending, _batch.c.running, _batch.c.concurrency))


@cache
def count_outcome(status):
    """UPDATE moving one item from running to ``status`` on the batch row (which
    it locks), returning what the cap and the finish need."""
    column = _batch.c[COUNTER_OF[status]]
    return (update(_batch).where(_batch.c.id == bindparam("batch_id"))
            .values({_batch.c.running: _batch.c.running - 1, column: column + 1,
                     _batch.c.progress_at: bindparam("now"), _batch.c.updated_at: bindparam("now")})
            .returning(_batch.c.status, _batch.c.pending, _batch.c.running, _batch.c.concurrency))
