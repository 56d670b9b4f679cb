"""Excel templates, uploads with a preview, and error workbooks.

Upload -> preview -> confirm: the checked upload is kept in the database
(``PendingUpload``) between the preview and the confirmation, so any web
process can finish it; the preview is computed again from the kept file.
"""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext as _
from flask_login import current_user, login_required

from portal.batches import imports
from portal.batches.access import visible_batch
from portal.batches.creation import get_node
from portal.errors import WorkflowError
from portal.excel import UnusableFile, layout
from portal.excel.errors_workbook import build_error_workbook, error_filename, layout_mode
from portal.excel.templates import build_template, template_filename
from portal.infra.extensions import db
from portal.infra.http_files import posted_file, xlsx_response
from portal.web.errors import back_with_message
from portal.workflow.visibility import pending_counts_by_node

bp = Blueprint("imports", __name__)
SHOWN_PROBLEMS = 500


def _posted_file():
    """(bytes, client file name) of the posted workbook."""
    upload = posted_file()
    if upload is None or not upload.filename:
        raise UnusableFile(_("Choose a file to upload."))
    return upload.read(), upload.filename


@bp.get("/imports")
@login_required
def index():
    return render_template("imports/index.html", nodes=pending_counts_by_node(current_user))


@bp.get("/nodes/<int:node_id>/import")
@login_required
def node_page(node_id):
    return render_template("imports/node.html", node=get_node(node_id), modes=layout.MODES)


@bp.get("/nodes/<int:node_id>/template")
@login_required
def template(node_id):
    node = get_node(node_id)
    mode = _mode_or_400(request.args.get("mode", "single"))
    content = build_template(current_user, node, mode, str(get_locale() or "en"))
    db.session.rollback()
    return xlsx_response(content, template_filename(node, mode))


def _mode_or_400(mode):
    if mode not in layout.MODES:
        abort(400, description=_("mode must be single or per_instance."))
    return mode


def _keep(node, mode, *, batch=None):
    """Check the posted file and keep it; the redirect to its preview."""
    data, filename = _posted_file()
    upload, _source, _checked = imports.inspect(current_user, node, mode, data)
    if batch is not None and upload.meta.batch_id != batch.id:
        raise UnusableFile(_("This is not the error workbook of batch %(number)s.",
                             number=batch.number))
    kept = imports.keep_upload(current_user, node, mode, data, filename)
    db.session.commit()
    return redirect(url_for("imports.preview", upload_id=kept.id))


@bp.post("/nodes/<int:node_id>/import")
@login_required
def upload(node_id):
    node = get_node(node_id)
    mode = _mode_or_400(request.form.get("mode", "single"))
    try:
        return _keep(node, mode)
    except WorkflowError as exc:
        db.session.rollback()
        return render_template("imports/node.html", node=node, modes=layout.MODES, mode=mode,
                               error=exc.message), exc.status


@bp.get("/imports/<int:upload_id>")
@login_required
def preview(upload_id):
    kept = imports.kept_upload(current_user, upload_id)
    node = get_node(kept.node_id)
    try:
        upload, source, checked = imports.inspect(current_user, node, kept.mode, kept.content)
    except WorkflowError as exc:
        return back_with_message(exc, url_for("imports.node_page", node_id=node.id))
    summary = imports.preview(checked, upload.skipped)
    db.session.rollback()
    return render_template(
        "imports/preview.html", kept=kept, node=node, source=source, summary=summary,
        problems=summary["invalid"][:SHOWN_PROBLEMS], columns=layout.places(node, kept.mode),
        importable=sum(1 for c in checked if c.importable))


@bp.post("/imports/<int:upload_id>/confirm")
@login_required
def confirm(upload_id):
    kept = imports.kept_upload(current_user, upload_id)
    node = get_node(kept.node_id)
    try:
        batch = imports.create_import_batch(current_user, node, kept.mode, kept.content)
    except WorkflowError as exc:
        return back_with_message(exc, url_for("imports.preview", upload_id=upload_id))
    db.session.delete(kept)
    imports.start(batch)
    db.session.commit()
    flash(_("Batch %(number)s created.", number=batch.number), "success")
    return redirect(f"{request.script_root}/batches/{batch.id}")


@bp.post("/imports/<int:upload_id>/discard")
@login_required
def discard(upload_id):
    kept = imports.kept_upload(current_user, upload_id)
    node_id = kept.node_id
    db.session.delete(kept)
    db.session.commit()
    flash(_("The upload was discarded; nothing was imported."), "info")
    return redirect(url_for("imports.node_page", node_id=node_id))


@bp.get("/batches/<int:batch_id>/error-file")
@login_required
def error_file(batch_id):
    """Built now from the batch's open failures, in the reader's language."""
    batch = visible_batch(current_user, batch_id)
    filename = error_filename(batch)
    content = build_error_workbook(batch, str(get_locale() or "en"))
    if content is None:
        flash(_("No failed item of this batch is left to correct."), "info")
        return redirect(url_for("batches.show", batch_id=batch_id))
    return xlsx_response(content, filename)


@bp.route("/batches/<int:batch_id>/corrections", methods=["GET", "POST"])
@login_required
def corrections(batch_id):
    """Upload the corrected error workbook of a batch: its rows are retried in a new batch."""
    batch = visible_batch(current_user, batch_id)
    if request.method == "GET":
        return render_template("imports/corrections.html", batch=batch)
    try:
        return _keep(batch.node, layout_mode(batch), batch=batch)
    except WorkflowError as exc:
        db.session.rollback()
        return render_template("imports/corrections.html", batch=batch,
                               error=exc.message), exc.status
