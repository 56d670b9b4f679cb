"""What happened to batches (and what recovery found of instances), as signals (blinker, as Flask's own):
metrics and completion notices listen here, so the batch engine names each event once and knows nothing of
who listens.

Sent inside the transaction that makes the event happen, so that a receiver may add rows to the same session
(a notice commits or rolls back with the event; a finishing transaction that is retried sends again, and the
receiver's rows must make the second send harmless):

- ``batch_finished``: sender the Batch, just marked finished (with or without errors).
- ``batch_cancelled``: sender the Batch, just cancelled.
- ``item_at_retry_limit``: sender the batch id; ``item_id``, ``task_id``: a failure that used up the item's
  retries (its task is back with people).

For counting only (sent as the thing is recorded; receivers write nothing):

- ``item_finished``: sender the batch id; ``outcome`` (success|failed|ignored), ``node_id``, ``seconds``.
- ``items_retried``: sender the batch id; ``count``, ``automatic`` (False: a person asked).
- ``recovery_acted``: sender the kind (reclaimed|retried|closed|stalled); ``count``.
- ``stuck_instances``: sender the outcome (repaired|unrepaired); ``count``: running instances recovery found
  waiting on nothing in one pass (``portal.workflow.engine.repair``).
"""
from blinker import Namespace

_signals = Namespace()

batch_finished = _signals.signal("batch-finished")
batch_cancelled = _signals.signal("batch-cancelled")
item_at_retry_limit = _signals.signal("item-at-retry-limit")
item_finished = _signals.signal("item-finished")
items_retried = _signals.signal("items-retried")
recovery_acted = _signals.signal("recovery-acted")
stuck_instances = _signals.signal("stuck-instances")
