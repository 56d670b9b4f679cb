"""Jobs that make Excel files."""
from flask import current_app

from portal.batches import dispatch
from portal.batches.lifecycle import lock_batch
from portal.excel.errors_workbook import load_error_source, render, store_error_file
from portal.infra.extensions import db
from portal.infra.queueing import background_job
from portal.models import Batch

ATTEMPTS = 3


def _snapshot(batch):
    """What changes whenever an item moves: a workbook built from an older
    snapshot must not replace a newer one."""
    return batch.updated_at, batch.failed


@background_job(dispatch.ERROR_FILE, timeout=600,
                if_lost="downloads build the workbook anew; the stored one waits for the batch's next end")
def build_error_file(batch_id):
    """(Re)build the batch's error workbook and store it as its error file.

    Idempotent: run again after retries, it replaces the file (or removes it
    when nothing failed any more). The workbook is built outside the write
    transaction (SQLite holds its write lock for a whole transaction) and
    stored only if the batch did not move meanwhile; else it is built again.
    Returns the error file id, or None.
    """
    for _attempt in range(ATTEMPTS):
        batch = db.session.get(Batch, batch_id, populate_existing=True)
        if batch is None:
            db.session.rollback()
            return None
        seen = _snapshot(batch)
        locale = (batch.created_by.locale if batch.created_by else None) or \
            current_app.config["BABEL_DEFAULT_LOCALE"]
        source = load_error_source(batch)
        db.session.rollback()            # no transaction (nor SQLite write lock) while rendering
        content = render(source, locale) if source is not None else None
        batch = lock_batch(batch_id)
        if _snapshot(batch) == seen:
            stored = store_error_file(batch, content)
            file_id = stored.id if stored is not None else None
            db.session.commit()
            return file_id
        db.session.rollback()
    raise RuntimeError(f"batch {batch_id} kept changing while its error file was built")
