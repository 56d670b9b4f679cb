"""Kept only for ``portal.jobs.excel_jobs``, which imports ``lock_batch`` from here:
the batch row lock, like every batch counter, now lives in ``portal.batches.lifecycle``.
Delete this module once that job imports it from there."""
from portal.batches.lifecycle import lock_batch  # noqa: F401
