"""My tasks, the task page (take, approve, reject, countersign, sign, recall) and the instance page.

Views are thin: they read the request, call ``portal.workflow.engine`` and
commit. Engine errors become a 404 (missing or not visible), field errors
next to their inputs (validation) or a flash (state conflicts). Opening a
task changes nothing: its lock is taken by the "Take this task" button (a
POST) or by the decision or countersign request itself.
"""
from flask import (Blueprint, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.errors import CONFLICT_MESSAGES, Conflict, UserError, ValidationFailed
from portal.infra.extensions import db
from portal.models.base import utcnow
from portal.web.args import id_arg
from portal.web.errors import back_with_message
from portal.workflow import engine, listing, visibility
from portal.web.forms import (CountersignForm, DecisionForm, SignForm, build_node_form,
                              node_form_values)

bp = Blueprint("tasks", __name__)

PAGE_SIZE = 50
# The instance page shows this many of its latest tasks and history entries, with links to older ones.
TASKS_PAGE = 100
HISTORY_PAGE = 100


@bp.before_request
@login_required
def _login_first():
    """Every page here needs a logged-in user."""


# --- what a row or the task page shows ---------------------------------------------------

def field_labels(node):
    """{field key: label} of a node, for showing stored forms."""
    return {f["key"]: f.get("label") or f["key"] for f in (node.fields if node else [])}


def _processes(all_counts):
    """[(key, name, pending)] of the processes the user has pending tasks in."""
    totals = {}
    for node, count in all_counts:
        key = node.process.key
        name, pending = totals.get(key, (node.process.name, 0))
        totals[key] = (name, pending + count)
    return [(key, name, pending) for key, (name, pending) in sorted(totals.items())]


@bp.route("/")
def index():
    process_key = request.args.get("process") or None
    node_id = id_arg("node_id")  # ids and pages beyond 32 bits are a 400
    title_query = (request.args.get("q") or "").strip()
    page = id_arg("page") or 1

    all_counts = visibility.pending_counts_by_node(current_user)
    counts = [(n, c) for n, c in all_counts if process_key is None or n.process.key == process_key]
    selected_node = next((n for n, _count in counts if n.id == node_id), None)

    found = listing.pending_tasks_page(current_user, node_id=node_id, process_key=process_key,
                                       title=title_query, page=page, page_size=PAGE_SIZE)
    now = utcnow()
    rows = [(task, visibility.task_flags(task, current_user, now)) for task in found.rows]

    filters = {k: v for k, v in (("process", process_key), ("node_id", node_id),
                                 ("q", title_query)) if v}
    return render_template(
        "tasks/index.html", rows=rows, total=found.total, page=found.page, pages=found.pages,
        filters=filters,
        processes=_processes(all_counts), counts=counts, process_key=process_key,
        node_id=node_id, selected_node=selected_node, title_query=title_query,
        max_selection=current_app.config["MAX_IMPORT_ROWS"],
        awaiting_signature=listing.awaiting_signature(current_user, PAGE_SIZE))


# --- the task page ---------------------------------------------------------------------------

def _render_task(task, *, node_form=None, decision_form=None, form_errors=None,
                 countersign_form=None, countersign_errors=None, status=200):
    """The task page; forms carry what was posted when it is shown again with errors."""
    choices = visibility.task_choices(task, current_user)
    node = task.node
    return render_template(
        "tasks/show.html", task=task, instance=task.instance, node=node,
        flags=choices.flags, can_decide=choices.can_decide, can_take=choices.can_take,
        lock_minutes=current_app.config["TASK_LOCK_MINUTES"],
        blocked_message=CONFLICT_MESSAGES[choices.shown_reason] if choices.shown_reason else None,
        node_form=node_form or build_node_form(
            node.fields, data=task.form or task.instance.data or {}),
        decision_form=decision_form or DecisionForm(formdata=None),
        form_errors=form_errors or {},
        countersign_form=countersign_form or CountersignForm(formdata=None),
        countersign_errors=countersign_errors or {},
        my_countersign=choices.my_countersign,
        sign_form=SignForm(formdata=None), labels=field_labels(node)), status


@bp.route("/tasks/<int:task_id>")
def show(task_id):
    """The task as it is; reading it takes no lock (a GET changes nothing)."""
    return _render_task(visibility.visible_task(current_user, task_id))


@bp.route("/tasks/<int:task_id>/take", methods=["POST"])
def take(task_id):
    """Hold the task's lock for TASK_LOCK_MINUTES so no one else acts on it meanwhile."""
    visibility.visible_task(current_user, task_id)
    try:
        task = engine.take_task(task_id, current_user)
        db.session.commit()
    except (Conflict, UserError) as exc:
        return _conflict(exc, task_id)
    if task.status == "pending" and task.lock_holder_id == current_user.id:
        flash(_("You hold this task for %(minutes)s minutes: no one else can act on it meanwhile.",
                minutes=current_app.config["TASK_LOCK_MINUTES"]), "success")
    return redirect(url_for("tasks.show", task_id=task_id))


def _conflict(exc, task_id):
    """A state conflict or refused user: say why and show the task as it is now."""
    return back_with_message(exc, url_for("tasks.show", task_id=task_id))


def _unmarked_errors(node, errors):
    """Errors the task page cannot mark next to an input: about an instance variable that is not a
    field of the node (a multi-instance collection beyond MAX_MULTI_INSTANCE)."""
    shown = {field["key"] for field in node.fields} | {"action", "comment"}
    return {key: problem for key, problem in errors.items() if key not in shown}


@bp.route("/tasks/<int:task_id>/decide", methods=["POST"])
def decide(task_id):
    task = visibility.visible_task(current_user, task_id)
    node_form = build_node_form(task.node.fields, formdata=request.form)
    decision_form = DecisionForm()
    action = decision_form.action.data
    try:
        engine.decide(task_id, current_user, action, decision_form.comment.data or None,
                      node_form_values(node_form, task.node.fields))
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        unmarked = _unmarked_errors(task.node, exc.errors)
        if unmarked:
            flash(" ".join(f"{key}: {problem}" for key, problem in unmarked.items()), "error")
        else:
            flash(_("Please correct the marked fields."), "error")
        return _render_task(task, node_form=node_form, decision_form=decision_form,
                            form_errors=exc.errors, status=422)
    except (Conflict, UserError) as exc:
        return _conflict(exc, task_id)
    flash(_("Task approved.") if action == "approve" else _("Task rejected."), "success")
    return redirect(url_for("tasks.index"))


@bp.route("/tasks/<int:task_id>/countersign", methods=["POST"])
def countersign(task_id):
    task = visibility.visible_task(current_user, task_id)
    form = CountersignForm()
    errors = {}
    if form.validate():
        try:
            engine.countersign(task_id, current_user, form.signer.data, form.comment.data or None)
            db.session.commit()
        except ValidationFailed as exc:
            db.session.rollback()
            errors = exc.errors
        except (Conflict, UserError) as exc:
            return _conflict(exc, task_id)
        else:
            flash(_("%(name)s was asked to countersign.", name=form.signer.data.strip()), "success")
            return redirect(url_for("tasks.show", task_id=task_id))
    errors.update({name: messages[0] for name, messages in form.errors.items()})
    return _render_task(task, countersign_form=form, countersign_errors=errors, status=422)


@bp.route("/tasks/<int:task_id>/sign", methods=["POST"])
def sign(task_id):
    visibility.visible_task(current_user, task_id)
    form = SignForm()
    try:
        engine.sign(task_id, current_user, form.comment.data or None)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash(" ".join(str(m) for m in exc.errors.values()), "error")
        return redirect(url_for("tasks.show", task_id=task_id))
    except (Conflict, UserError) as exc:
        return _conflict(exc, task_id)
    flash(_("You signed the task."), "success")
    return redirect(url_for("tasks.index"))


@bp.route("/tasks/<int:task_id>/recall", methods=["POST"])
def recall(task_id):
    done = visibility.visible_task(current_user, task_id)
    instance_id = done.instance_id
    try:
        task = engine.recall(task_id, current_user)
        db.session.commit()
    except Conflict as exc:
        return back_with_message(exc, url_for("tasks.instance", instance_id=instance_id),
                                 _("This can no longer be recalled: %(reason)s",
                                   reason=exc.message))
    flash(_("Recalled. The task is back with you."), "success")
    return redirect(url_for("tasks.show", task_id=task.id))


# --- the instance page ----------------------------------------------------------------------

@bp.route("/instances/<int:instance_id>")
def instance(instance_id):
    """The instance with its latest tasks and history entries; ``tasks_before`` and
    ``history_before`` show the page of older ones (a long 会签 makes hundreds)."""
    instance = visibility.visible_instance(current_user, instance_id)
    tasks = listing.latest_tasks(instance, limit=TASKS_PAGE, before=id_arg("tasks_before"))
    history = listing.latest_history(instance, limit=HISTORY_PAGE, before=id_arg("history_before"))
    labels = {node.id: field_labels(node) for node in instance.process.nodes}
    viewable = {t.id for t in tasks.rows if visibility.can_view_task(current_user, t)}
    return render_template(
        "tasks/instance.html", instance=instance, tasks=tasks, history=history, labels=labels,
        viewable=viewable, recallable=engine.recallable_task(instance, current_user))
