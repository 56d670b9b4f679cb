"""Excel: node templates, imports (dry run or batch) and error workbooks."""
from flask import current_app, request
from flask_babel import get_locale, gettext as _, lazy_gettext as _l

from portal.api import ApiError, api_user, bp, schemas
from portal.api.operations import Param, Reply, operation
from portal.batches import imports
from portal.batches.access import visible_batch
from portal.batches.creation import get_node
from portal.batches.serialize import batch_to_dict
from portal.errors import NotFound
from portal.excel.errors_workbook import build_error_workbook, error_filename
from portal.excel.layout import MODES
from portal.excel.templates import build_template, template_filename
from portal.infra.extensions import db
from portal.infra.http_files import posted_file, xlsx_response


def _mode(value):
    if value not in MODES:
        raise ApiError(400, _("mode must be single or per_instance."))
    return value


def _uploaded_file():
    """The multipart ``file``; 413 with a readable message when too large."""
    upload = posted_file()
    if upload is None:
        raise ApiError(400, _("Attach the workbook as the multipart field \"file\"."))
    return upload.read()


def _node_from_form():
    raw = request.form.get("node_id", "")
    try:
        node_id = int(raw)
    except ValueError:
        raise ApiError(400, _("node_id must be a whole number."))
    return get_node(node_id)


XLSX_REPLY = Reply("The workbook.", {"type": "string", "format": "binary"},
                   media_type=schemas.XLSX_MEDIA_TYPE)


@bp.post("/imports")
@operation("Import a filled workbook", tag="Excel", form=schemas.IMPORT_FORM,
           description="A dry run answers a preview and writes nothing; otherwise the valid "
                       "rows or sheets become a batch. A file that is not a portal workbook "
                       "for this node and mode is a 400.",
           replies={200: Reply("The dry run's preview.", {
                        "type": "object", "required": ["preview"],
                        "properties": {"preview": schemas.ref("Preview")}}),
                    202: Reply("The batch.", schemas.wrapped("batch", "Batch"))},
           errors=(400, 404, 413, 422),
           messages={("file", "required"): _l(
               "Attach the workbook as the multipart field \"file\".")})
def create_import():
    data = _uploaded_file()
    node = _node_from_form()
    mode = _mode(request.form.get("mode"))
    user = api_user()
    if request.form.get("dry_run") in schemas.FLAG_TRUE:
        preview = imports.preview_upload(user, node, mode, data)
        db.session.rollback()
        return {"preview": preview}
    batch = imports.create_import_batch(user, node, mode, data,
                                        concurrency=request.form.get("concurrency"))
    imports.start(batch)
    db.session.commit()
    return {"batch": batch_to_dict(batch)}, 202


@bp.get("/batches/<int:batch_id>/error-file")
@operation("A batch's error workbook", tag="Excel",
           description="The failed items in the layout of the batch's template, with an "
                       "Error column; corrected and imported again, it retries them.",
           replies={200: XLSX_REPLY}, errors=(400, 404))
def batch_error_file(batch_id):
    user = api_user()
    batch = visible_batch(user, batch_id)
    filename = error_filename(batch)
    locale = user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]
    content = build_error_workbook(batch, locale)
    if content is None:
        raise NotFound(_("No failed item of this batch is left to correct."))
    return xlsx_response(content, filename)


@bp.get("/nodes/<int:node_id>/template")
@operation("A node's template", tag="Excel",
           description="Prefilled with the caller's pending tasks at the node.",
           query=[Param("mode", {"type": "string", "enum": list(schemas.IMPORT_MODES),
                                 "default": "single"})],
           replies={200: XLSX_REPLY}, errors=(400, 404))
def node_template(node_id):
    node = get_node(node_id)
    mode = _mode(request.args.get("mode") or "single")
    user = api_user()
    locale = user.locale or str(get_locale() or current_app.config["BABEL_DEFAULT_LOCALE"])
    content = build_template(user, node, mode, locale)
    db.session.rollback()
    return xlsx_response(content, template_filename(node, mode))
