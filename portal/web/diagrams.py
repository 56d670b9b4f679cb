"""Process diagrams: the BPMN file behind an instance or a process version, and what the
pages draw on it.

The instance page and the admin process page render the diagram in the browser
(``static/js/diagram.js`` with the vendored bpmn-js viewer) from two XML routes here,
each authorized like the page it serves. Two template globals give those pages the
route's address and the markers to draw: which user tasks are done, current or
rejected for one instance, and how many tasks wait at each user task of a version.
What is marked is read by ``portal.workflow.diagrams``. A version stored without a BPMN file
(very old rows) has no diagram: the routes answer 404 and the globals return None.
"""
from flask import Blueprint, Response, abort, url_for
from flask_login import current_user, login_required
from werkzeug.utils import secure_filename

from portal.infra.extensions import db
from portal.models import ProcessDefinition
from portal.workflow import diagrams
from portal.workflow.visibility import visible_instance

bp = Blueprint("diagrams", __name__)


@bp.before_request
@login_required
def _login_first():
    """Both files need a logged-in user; each route then checks the object."""


def _bpmn_response(definition):
    """The version's BPMN file as XML the page's script fetches.

    Sent as an attachment so that opening the address downloads the file instead of the
    browser rendering an uploaded XML document on our origin (fetch ignores the header).
    It depends on who asks, so no shared cache keeps it and the browser asks every time.
    """
    if definition.bpmn is None:
        abort(404)
    response = Response(definition.bpmn.encode("utf-8"), content_type="application/xml; charset=utf-8")
    filename = secure_filename(f"{definition.key}-v{definition.version}.bpmn") or "process.bpmn"
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/instances/<int:instance_id>/diagram.bpmn")
def instance_bpmn(instance_id):
    instance = visible_instance(current_user, instance_id)  # NotFound when hidden
    return _bpmn_response(instance.process)


@bp.route("/admin/processes/<int:process_id>/diagram.bpmn")
def process_bpmn(process_id):
    # 404, not 403, for non-admins: the address tells nothing about which versions exist.
    if not current_user.is_admin:
        abort(404)
    definition = db.session.get(ProcessDefinition, process_id) or abort(404)
    return _bpmn_response(definition)


@bp.app_template_global()
def instance_diagram(instance):
    """What the instance page draws: ``{"url", "done", "active", "rejected"}`` (node keys, i.e.
    user task ids, see ``diagrams.instance_markers``), or None when the instance's version has no
    BPMN file. The page has already checked that the viewer may see the instance.
    """
    markers = diagrams.instance_markers(instance)
    if markers is None:
        return None
    return {"url": url_for("diagrams.instance_bpmn", instance_id=instance.id), **markers}


@bp.app_template_global()
def process_diagram(definition):
    """What the admin process page draws: ``{"url", "counts"}`` with counts = {node key: pending
    tasks of running instances there} for the node keys that have any, or None when the
    version has no BPMN file."""
    counts = diagrams.pending_counts(definition)
    if counts is None:
        return None
    return {"url": url_for("diagrams.process_bpmn", process_id=definition.id), "counts": counts}
