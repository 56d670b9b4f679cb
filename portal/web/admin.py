"""Admin pages: process definitions, users (passwords, API tokens), instances
(suspend/resume) and health.

Only administrators get in: anonymous visitors are sent to the login page and
logged-in users without the admin role get 403.
"""
import json
import time

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from flask_login import current_user
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from portal import accounts
from portal.errors import Conflict, ValidationFailed
from portal.infra.extensions import db, login_manager
from portal.infra.queueing import get_redis
from portal.jobs.scheduler import last_beat
from portal.models import ProcessDefinition, User
from portal.models.base import utcnow
from portal.web.args import id_arg
from portal.web.auth import is_local_path
from portal.web.errors import back_with_message
from portal.web.forms import PasswordResetForm, ProcessUploadForm, UserCreateForm, UserEditForm
from portal.workflow import engine, listing
from portal.workflow.process_files import load_process_report

bp = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZE = 50
# The scheduler beats every few seconds (at most every 10 s); a minute of silence means it stopped.
SCHEDULER_STALE_SECONDS = 60


@bp.before_request
def _admins_only():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    return None


def _page_arg():
    """``?page=``: 1 when absent; a whole number up to 2**31-1, else a 400."""
    return id_arg("page") or 1


# --- process definitions -------------------------------------------------------------------

def _render_processes(form, problems=None, status=200):
    return render_template("admin/processes.html", summaries=listing.process_summaries(), form=form,
                           problems=problems or {}), status


@bp.route("/processes")
def processes():
    return _render_processes(ProcessUploadForm(formdata=None))


@bp.route("/processes/upload", methods=["POST"])
def upload_process():
    form = ProcessUploadForm()
    if not form.validate():
        return _render_processes(form, status=400)
    upload = form.file.data
    try:
        report = load_process_report(upload.filename, upload.read())
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        if set(exc.errors) == {"file"}:
            form.file.errors.append(exc.errors["file"])
            return _render_processes(form, status=400)
        form.file.errors.append(str(exc.message))
        return _render_processes(form, problems=exc.errors, status=400)
    definition = report.definition
    if report.created:
        flash(_("Loaded %(key)s version %(version)s.", key=definition.key,
                version=definition.version), "success")
    else:
        flash(_("%(key)s is unchanged (version %(version)s).", key=definition.key,
                version=definition.version), "info")
    for warning in report.warnings:  # what the file says that the portal leaves out
        flash(warning, "warning")
    return redirect(url_for("admin.process", process_id=definition.id))


@bp.route("/processes/<int:process_id>")
def process(process_id):
    definition = db.session.get(ProcessDefinition, process_id) or abort(404)
    versions = listing.versions_of(definition)
    return render_template("admin/process.html", definition=definition, versions=versions,
                           source=json.dumps(definition.definition, indent=2, ensure_ascii=False))


# --- users -----------------------------------------------------------------------------------

def _render_users(create_form, status=200):
    users = accounts.all_users()
    edit_forms = {user.id: UserEditForm(formdata=None, obj=user) for user in users}
    return render_template("admin/users.html", users=users, create_form=create_form,
                           edit_forms=edit_forms), status


@bp.route("/users")
def users():
    return _render_users(UserCreateForm(formdata=None))


@bp.route("/users", methods=["POST"])
def create_user():
    form = UserCreateForm()
    if not form.validate():
        return _render_users(form, status=400)
    try:
        user = accounts.create_user(form.username.data.strip(), form.password.data,
                                    form.role.data, form.workflow_roles.data or "")
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        for name, message in exc.errors.items():
            if name in form:
                form[name].errors.append(message)
        return _render_users(form, status=400)
    flash(_("User %(name)s created.", name=user.username), "success")
    return redirect(url_for("admin.users"))


def _user_or_404(user_id):
    return db.session.get(User, user_id) or abort(404)


@bp.route("/users/<int:user_id>", methods=["POST"])
def update_user(user_id):
    user = _user_or_404(user_id)
    form = UserEditForm()
    if not form.validate():
        flash(" ".join(m for messages in form.errors.values() for m in messages), "error")
        return redirect(url_for("admin.users"))
    if user.id == current_user.id and form.role.data != user.role:
        flash(_("You cannot change your own role."), "error")
        return redirect(url_for("admin.users"))
    user.role = form.role.data
    user.workflow_roles = form.workflow_roles.data or ""
    db.session.commit()
    flash(_("User %(name)s updated.", name=user.username), "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
def disable_user(user_id):
    user = _user_or_404(user_id)
    if user.id == current_user.id:
        flash(_("You cannot disable your own account."), "error")
        return redirect(url_for("admin.users"))
    accounts.set_disabled(user, True)
    db.session.commit()
    flash(_("User %(name)s disabled.", name=user.username), "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
def enable_user(user_id):
    user = _user_or_404(user_id)
    accounts.set_disabled(user, False)
    db.session.commit()
    flash(_("User %(name)s enabled.", name=user.username), "success")
    return redirect(url_for("admin.users"))


def _render_user(user, reset_form=None, status=200):
    return render_template("admin/user.html", user=user, tokens=accounts.list_tokens(user),
                           sessions=accounts.count_sessions(user), now=utcnow(),
                           reset_form=reset_form or PasswordResetForm(formdata=None)), status


@bp.route("/users/<int:user_id>")
def show_user(user_id):
    """One user: password reset, API tokens (revoke one by one), open sessions."""
    return _render_user(_user_or_404(user_id))


@bp.route("/users/<int:user_id>/password", methods=["POST"])
def reset_password(user_id):
    """Set a user's password; every session of theirs ends. One's own password
    is changed on the account page, where the current one is asked for."""
    user = _user_or_404(user_id)
    if user.id == current_user.id:
        flash(_("Change your own password on your account page."), "error")
        return redirect(url_for("auth.change_password"))
    form = PasswordResetForm()
    if not form.validate():
        return _render_user(user, reset_form=form, status=400)
    try:
        accounts.reset_password(user, form.password.data)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        form.password.errors.extend(exc.errors.values())
        return _render_user(user, reset_form=form, status=400)
    flash(_("The password of %(name)s was changed; their sessions were logged out.",
            name=user.username), "success")
    return redirect(url_for("admin.show_user", user_id=user.id))


@bp.route("/users/<int:user_id>/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(user_id, token_id):
    user = _user_or_404(user_id)
    token = accounts.revoke_token(token_id, user=user)
    db.session.commit()
    flash(_("API token %(id)s of %(name)s is revoked.", id=token.id, name=user.username),
          "success")
    return redirect(url_for("admin.show_user", user_id=user.id))


# --- instances -------------------------------------------------------------------------------

@bp.route("/instances")
def instances():
    status = request.args.get("status") or None
    status = status if status in listing.INSTANCE_STATUSES else None
    suspended_only = request.args.get("suspended") == "1"
    title_query = (request.args.get("q") or "").strip()
    found = listing.instances_page(status=status, suspended_only=suspended_only,
                                   title=title_query, page=_page_arg(), page_size=PAGE_SIZE)
    filters = {k: v for k, v in (("status", status), ("suspended", "1" if suspended_only else None),
                                 ("q", title_query)) if v}
    return render_template("admin/instances.html", instances=found.rows, total=found.total,
                           page=found.page, pages=found.pages, filters=filters, status=status,
                           suspended_only=suspended_only, title_query=title_query,
                           statuses=listing.INSTANCE_STATUSES)


def _back_to_instances_url():
    target = request.form.get("next")
    return target if is_local_path(target) else url_for("admin.instances")


def _set_suspended(instance_id, suspended):
    try:
        instance = engine.set_suspended(instance_id, current_user, suspended)
        db.session.commit()
    except Conflict as exc:
        return back_with_message(exc, _back_to_instances_url(), _(
            "Instance %(id)s cannot be suspended: it has finished or is suspended already.",
            id=instance_id) if suspended else _(
            "Instance %(id)s cannot be resumed: it has finished or is not suspended.",
            id=instance_id))
    flash(_("Instance %(id)s suspended.", id=instance.id) if suspended
          else _("Instance %(id)s resumed.", id=instance.id), "success")
    return redirect(_back_to_instances_url())


@bp.route("/instances/<int:instance_id>/suspend", methods=["POST"])
def suspend_instance(instance_id):
    return _set_suspended(instance_id, True)


@bp.route("/instances/<int:instance_id>/resume", methods=["POST"])
def resume_instance(instance_id):
    return _set_suspended(instance_id, False)


# --- health ----------------------------------------------------------------------------------

def _queue_health(queue):
    return {
        "name": queue.name,
        "queued": queue.count,
        "started": StartedJobRegistry(queue=queue).count,
        "scheduled": ScheduledJobRegistry(queue=queue).count,
        "failed": FailedJobRegistry(queue=queue).count,
    }


def _health():
    """What the page shows; a Redis that cannot be reached is reported, not raised."""
    try:
        conn = get_redis()
        queues = Queue.all(connection=conn)
        if not any(q.name == current_app.config["QUEUE_NAME"] for q in queues):
            queues.append(Queue(current_app.config["QUEUE_NAME"], connection=conn))
        workers = sorted(Worker.all(connection=conn), key=lambda w: w.name)
        beat = last_beat(conn)
    except Exception as exc:  # noqa: BLE001 - any Redis failure is what this page reports
        return {"error": str(exc) or exc.__class__.__name__}
    beat_age = None if beat is None else max(int(time.time() - beat), 0)
    return {
        "error": None,
        "queues": [_queue_health(q) for q in sorted(queues, key=lambda q: q.name)],
        "workers": [{"name": w.name, "state": w.get_state(),
                     "queues": ", ".join(w.queue_names()),
                     "current_job": w.get_current_job_id(),
                     "successful": getattr(w, "successful_job_count", None),
                     "failed": getattr(w, "failed_job_count", None),
                     "last_heartbeat": getattr(w, "last_heartbeat", None)} for w in workers],
        "beat_age": beat_age,
        "beat_stale": beat_age is None or beat_age > SCHEDULER_STALE_SECONDS,
    }


@bp.route("/health")
def health():
    return render_template("admin/health.html", health=_health())
