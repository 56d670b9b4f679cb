"""Login, logout, the user's own password and the language switch.

Login attempts are rate limited per remote address (``LOGIN_RATE_LIMIT``) and
per submitted user name, case-folded, whatever the address
(``LOGIN_ACCOUNT_RATE_LIMIT``, shared with the password page's checks of the
current password). Every refusal reads "Wrong user name or
password." and costs one password hash check, whether the name is unknown,
the password wrong or the account disabled: nothing tells them apart.

Everything that changes state is a POST with a CSRF token, the language
switch included, so a link on another site changes nothing.
"""
import re
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required, login_url, login_user, logout_user
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from portal import accounts
from portal.errors import ValidationFailed
from portal.infra.extensions import db, limiter, login_manager
from portal.web.forms import LoginForm, PasswordChangeForm

bp = Blueprint("auth", __name__)

# One per-account budget for the login page and the password page.
ACCOUNT_SCOPE = "login-account"


@bp.record_once
def _translate_login_prompt(_state):
    """Flask-Login's "please log in" flash, in the reader's language; none for
    the home page, where logging in is simply what a first visit does."""
    login_manager.login_message = _l("Please log in to see this page.")
    login_manager.localize_callback = str

    @login_manager.unauthorized_handler
    def _to_login():
        if request.path != "/":
            flash(str(login_manager.login_message), login_manager.login_message_category)
        return redirect(login_url(login_manager.login_view, request.url))


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for it whatever the page says; the icon is an SVG."""
    return current_app.send_static_file("favicon.svg")


def is_local_path(target):
    """True for a path on this site ("/x?y"), never for another host ("//x", "/\\x")."""
    if not target or not isinstance(target, str):
        return False
    return (target.startswith("/") and not target.startswith("//")
            and "\\" not in target and not re.search(r"[\x00-\x1f\x7f]", target))


def _next_or(default_endpoint):
    target = request.args.get("next")
    return target if is_local_path(target) else url_for(default_endpoint)


def _home():
    """Where a login lands without a ``next``: supervisors and admins on what
    needs them, everyone else on their tasks."""
    return "batches.attention" if current_user.is_supervisor else "tasks.index"


def _login_limit():
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_limit():
    return current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"]


def _submitted_account():
    """The rate limit key of the account a login attempt names: the case-folded
    user name, so "Alice" and "alice" share one budget from any address."""
    name = (request.form.get("username") or "").strip().casefold()[:80]
    return "login-account:" + name


def _own_account():
    """The same budget for a logged-in user's password page: guessing the current
    password there counts like guessing it on the login page."""
    if current_user.is_authenticated:
        return "login-account:" + current_user.username.casefold()
    return "login-address:" + (request.remote_addr or "")


def _too_many_attempts():
    return _("Too many login attempts. Please wait a minute and try again.")


def _fresh_session():
    """Start a new session (new CSRF secret) that keeps only the chosen language."""
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], error_message=_too_many_attempts)
@limiter.shared_limit(_account_limit, ACCOUNT_SCOPE, key_func=_submitted_account, methods=["POST"],
                      error_message=_too_many_attempts)
def login():
    if current_user.is_authenticated:
        return redirect(_next_or(_home()))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.username.data.strip(), form.password.data)
        if user is None:
            flash(_("Wrong user name or password."), "error")
        else:
            _fresh_session()
            accounts.start_session(user)
            db.session.commit()
            login_user(user)
            return redirect(_next_or(_home()))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        accounts.end_session(current_user.session_key)
        db.session.commit()
    logout_user()
    _fresh_session()
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@limiter.shared_limit(_account_limit, ACCOUNT_SCOPE, key_func=_own_account, methods=["POST"],
                      error_message=_too_many_attempts)
@login_required
def change_password():
    """The user's own password; the other sessions of this user end."""
    form = PasswordChangeForm()
    status = 200
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.old_password.data, form.new_password.data,
                                     keep_key=current_user.session_key)
            db.session.commit()
        except ValidationFailed as exc:
            db.session.rollback()
            for name, message in exc.errors.items():
                form[name].errors.append(message)
        else:
            flash(_("Your password was changed. Your other sessions were logged out."), "success")
            return redirect(url_for("tasks.index"))
    if form.errors:
        status = 400
    return render_template("auth/password.html", form=form), status


def _page_to_return_to(target):
    """``target`` when it is a local path that a GET can open, else My tasks
    (or the login page for a visitor who is not logged in)."""
    default = url_for("tasks.index" if current_user.is_authenticated else "auth.login")
    if not is_local_path(target):
        return default
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        adapter.match(urlsplit(target).path, method="GET")
    except RequestRedirect:
        pass  # e.g. a missing trailing slash: the GET will be redirected there
    except HTTPException:
        return default  # no such page, or one that only takes a POST
    return target


@bp.route("/lang/<code>", methods=["POST"])
def set_language(code):
    """Switch the interface language, remember it for a logged-in user, go back
    to ``next`` (the page the switch was on)."""
    if code not in current_app.config["LANGUAGES"]:
        abort(404)
    session["lang"] = code
    if current_user.is_authenticated and current_user.locale != code:
        current_user.locale = code
        db.session.commit()
    return redirect(_page_to_return_to(request.form.get("next")))
