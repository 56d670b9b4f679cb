"""Batch approve from My tasks, the batches list and the batch page.

Pages only: every decision is taken by the batch services (creation, control,
access) and this module turns their outcomes into pages, flashes and status
codes. Lists use keyset pagination on ids so that a batch of 100,000 items
pages as fast as one of ten; totals come from the batch's counters, never from
counting items.
"""
from dataclasses import dataclass
from datetime import timedelta

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template,
                   request, url_for)
from flask_babel import format_timedelta, gettext as _, lazy_gettext as _l, ngettext
from flask_login import current_user, login_required
from sqlalchemy.orm import selectinload

from portal.batches import access, control, creation, dispatch
from portal.batches.serialize import batch_to_dict
from portal.extensions import db
from portal.models import Batch, BatchEvent, BatchItem, BatchItemAttempt, Node, User
from portal.models.base import utcnow
from portal.models.batches import FAILED_ITEM_STATUSES, ITEM_STATUSES
from portal.web.args import id_arg, id_list
from portal.workflow.engine import validate_decision
from portal.workflow.errors import Conflict, ValidationFailed, WorkflowError

bp = Blueprint("batches", __name__)

PAGE_SIZE = 50
ACTIVE_STATUSES = ("pending", "running")

BATCH_STATUS_LABELS = {
    "pending": _l("Pending"), "running": _l("Running"), "paused": _l("Paused"),
    "finished": _l("Finished"), "cancelled": _l("Cancelled"),
    "finished_with_errors": _l("Finished with errors"),
}
ITEM_STATUS_LABELS = {
    "pending": _l("Pending"), "running": _l("Running"), "success": _l("Success"),
    "ignored": _l("Ignored"), "failed": _l("Failed"), "import_failed": _l("Import failed"),
    "cancelled": _l("Cancelled"),
}
# Why a chosen task cannot be part of the batch (creation.classify reason codes).
REASON_LABELS = {
    "done": _l("Already handled"), "suspended": _l("Suspended"),
    "countersigning": _l("Waiting for a countersignature"),
    "locked": _l("Locked by someone else"), "not_yours": _l("Not yours"),
    "duplicate": _l("Chosen more than once"), "gone": _l("No longer exists"),
    "wrong_node": _l("At another step"), "unavailable": _l("Not available to you"),
}
EVENT_LABELS = {
    "created": _l("Created"), "paused": _l("Paused"), "resumed": _l("Resumed"),
    "cancelled": _l("Cancelled"), "retried": _l("Retried"),
}
# Item filter on the batch page -> the item statuses it shows.
ITEM_FILTERS = {
    "pending": ("pending",), "running": ("running",), "success": ("success",),
    "failed": FAILED_ITEM_STATUSES, "ignored": ("ignored",), "cancelled": ("cancelled",),
}


# --- small pure helpers --------------------------------------------------------------

def eta_seconds(remaining, processed, started_at, now):
    """Seconds until ``remaining`` items are done at the rate seen since ``started_at``.

    None while nothing has been processed yet (no rate to go by) or when
    nothing remains to do.
    """
    if remaining <= 0 or processed <= 0 or started_at is None:
        return None
    elapsed = (now - started_at).total_seconds()
    if elapsed <= 0:
        return None
    return int(round(remaining * elapsed / processed))


def progress_percent(batch):
    """Share of the batch's items that reached an end state, 0-100."""
    if not batch.total:
        return 100
    remaining = batch.pending + batch.running
    return int((batch.total - remaining) * 100 // batch.total)


def batch_status_key(batch):
    return "finished_with_errors" if batch.with_errors else batch.status


def batch_eta(batch, now=None):
    if batch.status not in ACTIVE_STATUSES:
        return None
    # Only items a worker ran count towards the rate; ignored ones mostly never ran.
    return eta_seconds(batch.pending + batch.running, batch.success + batch.failed,
                       batch.started_at, now or utcnow())


def eta_text(seconds):
    if seconds is None:
        return ""
    return _("About %(time)s left", time=format_timedelta(timedelta(seconds=seconds),
                                                          threshold=0.9))


def event_summary(event):
    """A short readable note on what an audit event's detail holds."""
    detail = event.detail if isinstance(event.detail, dict) else {}
    if event.action == "created" and isinstance(detail.get("total"), int):
        return ngettext("%(num)s item", "%(num)s items", detail["total"])
    if event.action == "retried" and isinstance(detail.get("count"), int):
        return ngettext("%(num)s item", "%(num)s items", detail["count"])
    if event.action == "cancelled" and isinstance(detail.get("items"), int):
        return ngettext("%(num)s pending item stopped", "%(num)s pending items stopped",
                        detail["items"])
    return ""


def counters(batch):
    """The counters the batch page shows, straight from the batch row."""
    return {name: getattr(batch, name) for name in
            ("total", "pending", "running", "success", "failed", "ignored", "cancelled")}


@dataclass
class Page:
    """One page of rows plus the cursors of its neighbours (None at either end)."""
    rows: list
    previous_cursor: int | None
    next_cursor: int | None


def keyset_page(query, column, *, after=None, before=None, descending=False, limit=PAGE_SIZE):
    """Rows of ``query`` that follow ``after`` (or precede ``before``) in display order.

    Display order is ``column`` ascending, or descending with ``descending``.
    Each page is one indexed range scan, however deep the user has paged.
    """
    def beyond(cursor):
        return column < cursor if descending else column > cursor

    def behind(cursor):
        return column > cursor if descending else column < cursor

    forward = column.desc() if descending else column.asc()
    backward = column.asc() if descending else column.desc()
    if before is not None:
        rows = db.session.execute(query.where(behind(before)).order_by(backward)
                                  .limit(limit + 1)).scalars().all()
        has_previous, has_next = len(rows) > limit, True
        rows = list(reversed(rows[:limit]))
    else:
        if after is not None:
            query = query.where(beyond(after))
        rows = db.session.execute(query.order_by(forward).limit(limit + 1)).scalars().all()
        has_previous, has_next = after is not None, len(rows) > limit
        rows = rows[:limit]
    if not rows:
        return Page([], None, None)
    return Page(rows, rows[0].id if has_previous else None, rows[-1].id if has_next else None)


def _cursor_args():
    return {"after": id_arg("after"), "before": id_arg("before")}


# --- loading what the user may see ------------------------------------------------------

def _visible_batch_or_404(batch_id):
    try:
        return access.visible_batch(current_user, batch_id)
    except WorkflowError:
        abort(404)


def _node_or_404(node_id):
    try:
        return creation.get_node(node_id)
    except WorkflowError:
        abort(404)


def _may_retry():
    return current_user.is_supervisor


# --- creating a batch -------------------------------------------------------------------

@dataclass
class Selection:
    """What the user chose on My tasks: explicit task ids, or all matching ``query``."""
    node: Node
    all_matching: bool
    query: str
    raw_ids: list

    @classmethod
    def from_request(cls, values):
        node = _node_or_404(id_arg("node_id", values))
        return cls(node=node, all_matching=values.get("all") == "1",
                   query=(values.get("q") or "").strip(), raw_ids=values.getlist("task_ids"))

    def task_ids(self, user):
        """The chosen ids; ValidationFailed when none (or not numbers) were chosen."""
        if self.all_matching:
            ids = creation.query_task_ids(user, self.node, self.query or None)
            if not ids:
                raise ValidationFailed({"task_ids": _("No pending task matches.")})
            return ids
        return creation.parse_task_ids(self.raw_ids)


def _submitted_form(node, values):
    """The shared form's values from the page, keyed like the node's fields."""
    data = {}
    for field in node.form_fields:
        if field.get("type") == "boolean":
            data[field["key"]] = True if values.get(field["key"]) else None
        else:
            data[field["key"]] = values.get(field["key"], "")
    return data


def _decision_errors(node, decision):
    """Every field error of the decision, so that a concurrency error found
    first does not hide them."""
    try:
        validate_decision(node, decision["action"], decision["comment"], decision["form"])
    except ValidationFailed as exc:
        return exc.errors
    return {}


def _render_new(selection, task_ids, errors=None, status=200):
    preview = creation.preview(current_user, selection.node, task_ids) if task_ids else None
    values = request.form if request.method == "POST" else {}
    return render_template(
        "batches/new.html", selection=selection, task_ids=task_ids, preview=preview,
        reason_labels=REASON_LABELS, errors=errors or {}, values=values,
        default_concurrency=current_app.config["BATCH_CONCURRENCY"]), status


@bp.route("/batches/new", methods=["GET", "POST"])
@login_required
def new():
    values = request.form if request.method == "POST" else request.args
    selection = Selection.from_request(values)
    try:
        task_ids = selection.task_ids(current_user)
    except ValidationFailed as exc:
        return _render_new(selection, [], exc.errors, 400)
    if request.method == "GET":
        return _render_new(selection, task_ids)
    decision = {"action": values.get("action"), "comment": values.get("comment", ""),
                "form": _submitted_form(selection.node, values)}
    try:
        batch = creation.create_batch(
            current_user, selection.node, task_ids=task_ids, **decision,
            concurrency=values.get("concurrency"),
            filter={"title_contains": selection.query} if selection.all_matching else None)
    except ValidationFailed as exc:
        db.session.rollback()
        errors = dict(exc.errors)
        errors.update(_decision_errors(selection.node, decision))
        return _render_new(selection, task_ids, errors, 422)
    db.session.commit()
    dispatch.start(batch)
    flash(_("Batch %(number)s created.", number=batch.number), "success")
    return redirect(url_for("batches.show", batch_id=batch.id))


# --- the list ---------------------------------------------------------------------------

def _filtered_batches(filters):
    query = access.visible_batches_query(current_user)
    if filters["status"] == "finished_with_errors":
        query = query.where(Batch.status == "finished", Batch.failed > 0)
    elif filters["status"] in BATCH_STATUS_LABELS:
        query = query.where(Batch.status == filters["status"])
    if filters["node_id"]:
        query = query.where(Batch.node_id == filters["node_id"])
    if filters["creator_id"] and current_user.is_supervisor:
        query = query.where(Batch.created_by_id == filters["creator_id"])
    return query


def _filter_choices():
    """Nodes (and for supervisors, creators) that the visible batches refer to."""
    visible = access.visible_batches_query(current_user).subquery()
    nodes = db.session.execute(
        db.select(Node).where(Node.id.in_(db.select(visible.c.node_id)))
        .order_by(Node.name, Node.id)).scalars().all()
    creators = []
    if current_user.is_supervisor:
        creators = db.session.execute(
            db.select(User).where(User.id.in_(db.select(Batch.created_by_id)))
            .order_by(User.username)).scalars().all()
    return nodes, creators


@bp.route("/batches")
@login_required
def index():
    filters = {"status": request.args.get("status", ""),
               "node_id": id_arg("node_id"), "creator_id": id_arg("creator_id")}
    query = _filtered_batches(filters).options(
        selectinload(Batch.node).selectinload(Node.process), selectinload(Batch.created_by))
    page = keyset_page(query, Batch.id, descending=True, **_cursor_args())
    nodes, creators = _filter_choices()
    return render_template("batches/index.html", page=page, filters=filters, nodes=nodes,
                           filter_args={key: value for key, value in filters.items() if value},
                           creators=creators, status_labels=BATCH_STATUS_LABELS,
                           status_key=batch_status_key)


# --- one batch --------------------------------------------------------------------------

def _item_id_bounds(batch_id):
    """(first, last) item id of a batch, or None when it has no items.

    Read as one min and one max per status: each is a single step into the
    (batch_id, status, id) index, where a plain min(id) would visit every item.
    """
    ends = []
    for status in ITEM_STATUSES:
        of_status = (BatchItem.batch_id == batch_id, BatchItem.status == status)
        ends += [db.select(db.func.min(BatchItem.id)).where(*of_status).scalar_subquery(),
                 db.select(db.func.max(BatchItem.id)).where(*of_status).scalar_subquery()]
    found = [value for value in db.session.execute(db.select(*ends)).one() if value is not None]
    return (min(found), max(found)) if found else None


def _item_page(batch, status_filter):
    """One page of the batch's items, optionally of one status group.

    The id range keeps the scan inside this batch's items: without it an
    unfiltered page walks the primary key through other batches' items.
    """
    bounds = _item_id_bounds(batch.id)
    if bounds is None:
        return Page([], None, None)
    query = (db.select(BatchItem)
             .where(BatchItem.batch_id == batch.id, BatchItem.id.between(*bounds))
             .options(selectinload(BatchItem.retried_by)))
    if status_filter in ITEM_FILTERS:
        query = query.where(BatchItem.status.in_(ITEM_FILTERS[status_filter]))
    return keyset_page(query, BatchItem.id, **_cursor_args())


def _source_batch(batch):
    if batch.source_batch_id is None:
        return None
    source = db.session.get(Batch, batch.source_batch_id)
    visible = source is not None and (current_user.is_supervisor
                                      or source.created_by_id == current_user.id)
    return source if visible else None


def _page_context(batch):
    """What the batch and item pages share: labels, permissions and limits."""
    return {"batch": batch, "status_labels": BATCH_STATUS_LABELS,
            "item_labels": ITEM_STATUS_LABELS, "status_key": batch_status_key(batch),
            "may_retry": _may_retry(), "retry_limit": current_app.config["BATCH_RETRY_LIMIT"],
            "retryable": control.retryable, "at_retry_limit": control.at_retry_limit}


@bp.route("/batches/<int:batch_id>")
@login_required
def show(batch_id):
    batch = _visible_batch_or_404(batch_id)
    status_filter = request.args.get("status", "")
    page = _item_page(batch, status_filter)
    events = db.session.execute(
        db.select(BatchEvent).where(BatchEvent.batch_id == batch.id)
        .order_by(BatchEvent.id.desc()).limit(100)).scalars().all()
    eta = batch_eta(batch)
    return render_template(
        "batches/show.html", **_page_context(batch), page=page, status_filter=status_filter,
        item_filters=ITEM_FILTERS, titles=access.item_titles(page.rows),
        events=events, event_labels=EVENT_LABELS, event_summary=event_summary,
        counters=counters(batch),
        percent=progress_percent(batch), eta_text=eta_text(eta),
        active=batch.status in ACTIVE_STATUSES, source_batch=_source_batch(batch))


@bp.route("/batches/<int:batch_id>/progress")
@login_required
def progress(batch_id):
    """Live counters for the batch page's polling script."""
    batch = _visible_batch_or_404(batch_id)
    eta = batch_eta(batch)
    body = batch_to_dict(batch)
    body.update(eta_seconds=eta, eta_text=eta_text(eta), percent=progress_percent(batch),
                counters=counters(batch), active=batch.status in ACTIVE_STATUSES,
                status_label=str(BATCH_STATUS_LABELS[batch_status_key(batch)]))
    return jsonify(body)


@bp.route("/batches/<int:batch_id>/items/<int:item_id>")
@login_required
def item(batch_id, item_id):
    batch = _visible_batch_or_404(batch_id)
    batch_item = db.session.get(BatchItem, item_id)
    if batch_item is None or batch_item.batch_id != batch.id:
        abort(404)
    attempts = db.session.execute(
        db.select(BatchItemAttempt).where(BatchItemAttempt.item_id == batch_item.id)
        .order_by(BatchItemAttempt.id)).scalars().all()
    return render_template("batches/item.html", **_page_context(batch), item=batch_item,
                           attempts=attempts,
                           title=access.item_titles([batch_item]).get(batch_item.task_id))


# --- steering a batch ---------------------------------------------------------------------

CONTROL_ACTIONS = {
    "pause": (control.pause, _l("Batch paused.")),
    "resume": (control.resume, _l("Batch resumed.")),
    "cancel": (control.cancel, _l("Batch cancelled.")),
}


def _refused(batch_id, exc):
    """Back to the batch page, nothing changed, saying why."""
    db.session.rollback()
    flash(exc.message, "warning")
    return redirect(url_for("batches.show", batch_id=batch_id))


@bp.route("/batches/<int:batch_id>/<any(pause, resume, cancel):action>", methods=["POST"])
@login_required
def steer(batch_id, action):
    """Pause, resume or cancel: whoever may see the batch (its creator or a supervisor)."""
    batch = _visible_batch_or_404(batch_id)
    service, done_message = CONTROL_ACTIONS[action]
    try:
        batch = service(batch, current_user)
    except Conflict as exc:
        return _refused(batch_id, exc)
    db.session.commit()
    dispatch.start(batch)
    flash(str(done_message), "success")
    return redirect(url_for("batches.show", batch_id=batch.id))


@bp.route("/batches/<int:batch_id>/retry", methods=["POST"])
@login_required
def retry(batch_id):
    """Retry every failed item, or the ``item_id`` ones: supervisors and admins only."""
    batch = _visible_batch_or_404(batch_id)
    if not _may_retry():
        abort(403, description=_("Only supervisors and admins may do this."))
    item_ids = id_list(request.form.getlist("item_id")) or None
    back = request.form.get("next_page") == "item" and item_ids
    try:
        batch, retried, at_limit = control.retry(batch, current_user, item_ids)
    except Conflict as exc:
        return _refused(batch_id, exc)
    db.session.commit()
    dispatch.start(batch)
    flash(ngettext("%(num)s item retried.", "%(num)s items retried.", retried),
          "success" if retried else "info")
    if at_limit:
        flash(ngettext("%(num)s item reached the retry limit: its task is back to manual handling.",
                       "%(num)s items reached the retry limit: their tasks are back to manual "
                       "handling.", at_limit), "warning")
    if back:
        return redirect(url_for("batches.item", batch_id=batch.id, item_id=item_ids[0]))
    return redirect(url_for("batches.show", batch_id=batch.id))
