"""JSON shapes of batches and items (contract (docs/contract.md) section 4)."""
from portal.batches import item_errors


def _iso(value):
    return value.isoformat() + "Z" if value is not None else None


def batch_to_dict(batch):
    return {
        "id": batch.id, "number": batch.number, "status": batch.status, "node_id": batch.node_id,
        "mode": batch.mode, "action": batch.action, "total": batch.total,
        "pending": batch.pending, "running": batch.running, "success": batch.success,
        "failed": batch.failed,
        # Cancelled items are final and were not executed: counted under ignored
        # so that total = pending + running + success + failed + ignored.
        "ignored": batch.ignored + batch.cancelled, "cancelled": batch.cancelled,
        "concurrency": batch.concurrency,
        "created_by": batch.created_by.username if batch.created_by else None,
        "created_at": _iso(batch.created_at), "updated_at": _iso(batch.updated_at),
        "finished_at": _iso(batch.finished_at), "with_errors": batch.with_errors,
        "has_error_file": batch.error_file_id is not None,
        "source_batch_id": batch.source_batch_id,
    }


def item_to_dict(item, labels=None):
    """An item as the API shows it: ``error`` and ``field_errors`` in English (``labels``:
    the node's, from ``item_errors.english_labels``), ``error_code`` stable for scripts."""
    return {
        "id": item.id, "task_id": item.task_id, "status": item.status, "error": item.error,
        # Items that stopped before they had a code (cancelled ones) go by their kind.
        "error_code": item.error_code or item.error_kind, "error_kind": item.error_kind,
        "field_errors": item_errors.english_field_errors(item.field_errors, labels),
        "retry_count": item.retry_count, "attempts": item.attempts,
        "source_ref": item.source_ref, "finished_at": _iso(item.finished_at),
    }
