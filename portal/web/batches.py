"""Batch approve from My tasks, the batches list and the batch page.

Pages only: every decision is taken by the batch services (creation, control,
access) and this module turns their outcomes into pages, flashes and status
codes. Lists use keyset pagination on ids so that a batch of 100,000 items
pages as fast as one of ten; totals come from the batch's counters, never from
counting items.
"""
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template,
                   request, url_for)
from flask_babel import format_timedelta, gettext as _, lazy_gettext as _l, ngettext
from flask_login import current_user, login_required

from portal.batches import access, control, corrections, creation, dispatch, item_errors, listing
from portal.batches import attention as attention_service
from portal.batches.destinations import END_LABELS, item_destinations
from portal.batches.progress import batch_eta, items_by_status, progress_percent, status_key
from portal.batches.serialize import batch_to_dict
from portal.errors import Conflict, ValidationFailed
from portal.infra.extensions import db
from portal.models import Node
from portal.models.batches import FINISHED_WITH_ERRORS, MAX_CONCURRENCY
from portal.web.args import id_arg, id_list
from portal.web.errors import back_with_message
from portal.web.forms import build_node_form, node_form_values

bp = Blueprint("batches", __name__)

BATCH_STATUS_LABELS = {
    "pending": _l("Pending"), "running": _l("Running"), "paused": _l("Paused"),
    "finished": _l("Finished"), "cancelled": _l("Cancelled"),
    FINISHED_WITH_ERRORS: _l("Finished with errors"),
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
    "cancelled": _l("Cancelled"), "retried": _l("Retried"), "corrected": _l("Corrected"),
    "finished": _l("Finished"),
}


# --- small pure helpers --------------------------------------------------------------

def eta_text(seconds):
    if seconds is None:
        return ""
    return _("About %(time)s left", time=format_timedelta(timedelta(seconds=seconds),
                                                          threshold=0.9))


def event_summary(event, labels=None):
    """A short readable note on what an audit event's detail holds; ``labels`` ({field key:
    label}) name the fields a batch set for every task."""
    detail = event.detail if isinstance(event.detail, dict) else {}
    if event.action == "created" and isinstance(detail.get("total"), int):
        items = ngettext("%(num)s item", "%(num)s items", detail["total"])
        return " · ".join([items, *_set_fields_note(detail.get("set_fields"), labels or {})])
    if event.action == "retried" and isinstance(detail.get("count"), int):
        return ngettext("%(num)s item", "%(num)s items", detail["count"])
    if event.action == "finished" and all(isinstance(detail.get(k), int) for k in ("success", "failed")):
        return _("%(success)s succeeded, %(failed)s failed, %(ignored)s ignored",
                 success=detail["success"], failed=detail["failed"], ignored=detail.get("ignored") or 0)
    if event.action == "cancelled" and isinstance(detail.get("items"), int):
        return ngettext("%(num)s pending item stopped", "%(num)s pending items stopped",
                        detail["items"])
    return ""


def _set_fields_note(keys, labels):
    """[what a shared form set for every task], or [] for a batch made otherwise (imports,
    batches made before the fields it set were recorded)."""
    if not isinstance(keys, list):
        return []
    if not keys:
        return [_("No field set for all: each task kept its own values")]
    return [_("Set for all: %(fields)s", fields=", ".join(str(labels.get(k) or k) for k in keys))]


def _cursor_args():
    return {"after": id_arg("after"), "before": id_arg("before")}


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
        node = creation.get_node(id_arg("node_id", values))
        return cls(node=node, all_matching=values.get("all") == "1",
                   query=(values.get("q") or "").strip(), raw_ids=values.getlist("task_ids"))

    def task_ids(self, user):
        """The chosen ids; ValidationFailed when none (or not numbers) were chosen."""
        if self.all_matching:
            ids, stored = creation.all_pending_selection(user, self.node, self.query)
            errors = creation.selection_errors(ids, stored)
            if errors:
                raise ValidationFailed(errors)
            return ids
        return creation.parse_task_ids(self.raw_ids)

    @property
    def stored_filter(self):
        return {"all_pending": True, "title_contains": self.query or None} \
            if self.all_matching else None


SET_ALL = "set_all"   # the name of each field's "set the same value for all" box


def ticked_fields(values):
    """The keys whose "set the same value for all" box is ticked."""
    return set(values.getlist(SET_ALL))


def _submitted_form(node, values):
    """(shared form, field errors) from the page.

    Only the fields whose "set the same value for all" box is ticked are set for every task;
    every other field keeps each task's own value. A value typed into a field whose box is off,
    or a ticked box without a value, is a field error: the page neither drops nor invents a
    value without saying so. A ticked yes/no field left unchecked sets No.
    """
    ticked = ticked_fields(values)
    data, errors = {}, {}
    for field in node.form_fields:
        key = field["key"]
        if field.get("readonly"):
            continue
        if field.get("type") == "boolean":
            value = bool(values.get(key))
            given = value
        else:
            value = values.get(key, "")
            given = value.strip() != ""
        if key not in ticked:
            if given:
                errors[key] = _("Tick “Set the same value for all” to set this value for every "
                                "task, or clear it.")
        elif given or field.get("type") == "boolean":
            data[key] = value
        else:
            errors[key] = _("Enter the value to set for every task, or untick “Set the same "
                            "value for all”.")
    return data, errors


def _previewing():
    """A POST from My tasks that only carries a selection (too many ids for a URL):
    it shows the batch form like a GET; nothing is created."""
    return request.method == "POST" and request.form.get("preview") == "1"


def _render_new(selection, task_ids, errors=None, status=200):
    preview = (creation.preview(current_user, selection.node, task_ids, holders=True)
               if task_ids else None)
    values = request.form if request.method == "POST" and not _previewing() else {}
    return render_template(
        "batches/new.html", selection=selection, task_ids=task_ids, preview=preview,
        reason_labels=REASON_LABELS, errors=errors or {}, values=values,
        set_all=ticked_fields(values) if values else set(),
        default_concurrency=current_app.config["BATCH_CONCURRENCY"],
        max_concurrency=MAX_CONCURRENCY), status


@bp.route("/batches/new", methods=["GET", "POST"])
@login_required
def new():
    values = request.form if request.method == "POST" else request.args
    selection = Selection.from_request(values)
    try:
        task_ids = selection.task_ids(current_user)
    except ValidationFailed as exc:
        return _render_new(selection, [], exc.errors, 400)
    if request.method == "GET" or _previewing():
        return _render_new(selection, task_ids)
    form, form_errors = _submitted_form(selection.node, values)
    request_args = {"task_ids": task_ids, "action": values.get("action"),
                    "comment": values.get("comment", ""), "form": form,
                    "concurrency": values.get("concurrency"), "filter": selection.stored_filter}
    if form_errors:  # with whatever else the request gets wrong, nothing created
        errors = creation.request_errors(selection.node, **request_args)
        return _render_new(selection, task_ids, {**errors, **form_errors}, 422)
    try:
        batch = creation.create_batch(current_user, selection.node, **request_args)
    except ValidationFailed as exc:
        db.session.rollback()
        return _render_new(selection, task_ids, exc.errors, 422)
    dispatch.start_after_commit(batch)
    db.session.commit()
    flash(_("Batch %(number)s created.", number=batch.number), "success")
    return redirect(url_for("batches.show", batch_id=batch.id))


# --- the list ---------------------------------------------------------------------------

@bp.route("/batches")
@login_required
def index():
    filters = {"status": request.args.get("status", ""),
               "node_id": id_arg("node_id"), "creator_id": id_arg("creator_id")}
    page = listing.batches_page(current_user, **filters, **_cursor_args())
    nodes, creators = listing.filter_choices(current_user)
    return render_template("batches/index.html", page=page, filters=filters, nodes=nodes,
                           filter_args={key: value for key, value in filters.items() if value},
                           creators=creators, status_labels=BATCH_STATUS_LABELS,
                           status_key=status_key)


@bp.route("/attention")
@login_required
def attention():
    """The supervisor home: what needs a person now."""
    if not current_user.is_supervisor:
        abort(403)
    overview = attention_service.overview()
    return render_template("batches/attention.html", **overview,
                           error_texts=item_errors.texts_across_batches(overview["at_limit"]),
                           status_labels=BATCH_STATUS_LABELS, status_key=status_key,
                           event_labels=EVENT_LABELS, event_summary=event_summary)


# --- one batch --------------------------------------------------------------------------

def _page_context(batch):
    """What the batch and item pages share: labels, permissions and limits."""
    return {"batch": batch, "status_labels": BATCH_STATUS_LABELS,
            "item_labels": ITEM_STATUS_LABELS, "status_key": status_key(batch),
            "may_retry": access.may_retry(current_user),
            "retry_limit": current_app.config["BATCH_RETRY_LIMIT"],
            "retryable": control.retryable, "at_retry_limit": control.at_retry_limit,
            "correctable": corrections.correctable}


@bp.route("/batches/<int:batch_id>")
@login_required
def show(batch_id):
    batch = access.visible_batch(current_user, batch_id)
    status_filter = request.args.get("status", "")
    page = listing.items_page(batch, status_filter, **_cursor_args())
    return render_template(
        "batches/show.html", **_page_context(batch), page=page, status_filter=status_filter,
        first_item_id=listing.first_item_id(batch.id),
        retry_all_count=control.retry_all_count(batch),
        item_filters=listing.ITEM_FILTERS, titles=access.item_titles(page.rows),
        error_texts=item_errors.texts(page.rows, batch.node),
        destinations=item_destinations(item.task_id for item in page.rows if item.status == "success"),
        end_labels=END_LABELS,
        events=listing.recent_events(batch), event_labels=EVENT_LABELS,
        event_summary=partial(event_summary, labels=item_errors.key_labels(batch.node)),
        by_status=items_by_status(batch),
        percent=progress_percent(batch), eta_text=eta_text(batch_eta(batch)),
        active=batch.is_active,
        source_batch=access.visible_batch_or_none(current_user, batch.source_batch_id),
        corrections=listing.corrections_of(batch, current_user))


@bp.route("/batches/<int:batch_id>/progress")
@login_required
def progress(batch_id):
    """Live counters for the batch page's polling script."""
    batch = access.visible_batch(current_user, batch_id)
    eta = batch_eta(batch)
    body = batch_to_dict(batch)
    body.update(eta_seconds=eta, eta_text=eta_text(eta),
                percent=progress_percent(batch), by_status=items_by_status(batch),
                active=batch.is_active,
                status_label=str(BATCH_STATUS_LABELS[status_key(batch)]))
    return jsonify(body)


def _visible_item(batch_id, item_id):
    """(batch, item) when the user may see the batch and the item is one of its own."""
    batch = access.visible_batch(current_user, batch_id)
    batch_item = listing.batch_item(batch, item_id)
    if batch_item is None:
        abort(404)
    return batch, batch_item


@bp.route("/batches/<int:batch_id>/items/<int:item_id>")
@login_required
def item(batch_id, item_id):
    batch, batch_item = _visible_item(batch_id, item_id)
    attempts = listing.item_attempts(batch_item)
    labels = item_errors.key_labels(batch.node)   # errors read in the reader's language
    return render_template(
        "batches/item.html", **_page_context(batch), item=batch_item, attempts=attempts,
        error_text=item_errors.text(batch_item, labels),
        field_errors=item_errors.labelled_field_texts(batch_item.field_errors, labels),
        attempt_errors={a.id: item_errors.text(a, labels) for a in attempts},
        title=access.item_titles([batch_item]).get(batch_item.task_id))


# --- correcting an item -------------------------------------------------------------------

def _render_correct(batch, item, node_form, action, comment, errors=None, status=200):
    return render_template(
        "batches/correct.html", batch=batch, item=item, node=batch.node, node_form=node_form,
        action=action, comment=comment, errors=errors or {},
        error_text=item_errors.text(item, item_errors.key_labels(batch.node)),
        title=access.item_titles([item]).get(item.task_id)), status


@bp.route("/batches/<int:batch_id>/items/<int:item_id>/correct", methods=["GET", "POST"])
@login_required
def correct(batch_id, item_id):
    """The item's values, to fix and run again (a failure of its values only)."""
    batch, batch_item = _visible_item(batch_id, item_id)
    fields = batch.node.fields
    if request.method == "GET":
        if not corrections.correctable(batch_item, batch):
            return redirect(url_for("batches.item", batch_id=batch.id, item_id=item_id))
        decision = corrections.decision_to_correct(batch_item, batch)
        stored = item_errors.field_texts(batch_item.field_errors,
                                         item_errors.key_labels(batch.node))
        return _render_correct(batch, batch_item, build_node_form(fields, data=decision.get(
            "form") or {}), decision.get("action"), decision.get("comment"), stored)
    node_form = build_node_form(fields, formdata=request.form)
    action, comment = request.form.get("action"), request.form.get("comment") or None
    try:
        corrections.correct(batch, current_user, item_id, action, comment,
                            node_form_values(node_form, fields))
    except ValidationFailed as exc:
        db.session.rollback()
        return _render_correct(batch, batch_item, node_form, action, comment, exc.errors, 422)
    except Conflict as exc:
        return back_with_message(exc, url_for("batches.item", batch_id=batch.id,
                                              item_id=item_id))
    dispatch.start_after_commit(batch)
    db.session.commit()
    flash(_("Item #%(id)s corrected: it runs again.", id=item_id), "success")
    return redirect(url_for("batches.item", batch_id=batch.id, item_id=item_id))


# --- steering a batch ---------------------------------------------------------------------

CONTROL_ACTIONS = {
    "pause": (control.pause, _l("Batch paused.")),
    "resume": (control.resume, _l("Batch resumed.")),
    "cancel": (control.cancel, _l("Batch cancelled.")),
}


def _refused(batch_id, exc):
    """Back to the batch page, nothing changed, saying why."""
    return back_with_message(exc, url_for("batches.show", batch_id=batch_id))


@bp.route("/batches/<int:batch_id>/<any(pause, resume, cancel):action>", methods=["POST"])
@login_required
def steer(batch_id, action):
    """Pause, resume or cancel: whoever may see the batch (its creator or a supervisor)."""
    batch = access.visible_batch(current_user, batch_id)
    service, done_message = CONTROL_ACTIONS[action]
    try:
        batch = service(batch, current_user)
    except Conflict as exc:
        return _refused(batch_id, exc)
    dispatch.start_after_commit(batch)
    db.session.commit()
    flash(str(done_message), "success")
    return redirect(url_for("batches.show", batch_id=batch.id))


@bp.route("/batches/<int:batch_id>/retry", methods=["POST"])
@login_required
def retry(batch_id):
    """Retry every failed item, or the ``item_id`` ones: supervisors and admins only."""
    batch = access.visible_batch(current_user, batch_id)
    access.require_may_retry(current_user)
    item_ids = id_list(request.form.getlist("item_id")) or None
    back = request.form.get("next_page") == "item" and item_ids
    try:
        batch, retried, at_limit, needs_correction = control.retry(batch, current_user, item_ids)
    except Conflict as exc:
        return _refused(batch_id, exc)
    dispatch.start_after_commit(batch)
    db.session.commit()
    flash(ngettext("%(num)s item retried.", "%(num)s items retried.", retried),
          "success" if retried else "info")
    if at_limit:
        flash(ngettext("%(num)s item reached the retry limit: its task is back to manual handling.",
                       "%(num)s items reached the retry limit: their tasks are back to manual "
                       "handling.", at_limit), "warning")
    if needs_correction:
        flash(ngettext("%(num)s item failed for its values: correct it rather than retry it.",
                       "%(num)s items failed for their values: correct them rather than retry "
                       "them.", needs_correction), "warning")
    if back:
        return redirect(url_for("batches.item", batch_id=batch.id, item_id=item_ids[0]))
    return redirect(url_for("batches.show", batch_id=batch.id))
