"""Login, logout and the language switch.

Login attempts are rate limited per remote address (``LOGIN_RATE_LIMIT``); a
disabled account is refused with its own message once the password matched,
so the message tells nothing to someone guessing passwords.
"""
import re

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_user, logout_user

from portal.accounts import find_user
from portal.extensions import db, limiter, login_manager
from portal.web.forms import LoginForm

bp = Blueprint("auth", __name__)


@bp.record_once
def _translate_login_prompt(_state):
    """Flask-Login's "please log in" flash, in the reader's language."""
    login_manager.login_message = _l("Please log in to see this page.")
    login_manager.localize_callback = str


def is_local_path(target):
    """True for a path on this site ("/x?y"), never for another host ("//x", "/\\x")."""
    if not target or not isinstance(target, str):
        return False
    return (target.startswith("/") and not target.startswith("//")
            and "\\" not in target and not re.search(r"[\x00-\x1f\x7f]", target))


def _next_or(default_endpoint):
    target = request.args.get("next")
    return target if is_local_path(target) else url_for(default_endpoint)


def _login_limit():
    return current_app.config["LOGIN_RATE_LIMIT"]


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
def login():
    if current_user.is_authenticated:
        return redirect(_next_or("tasks.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = find_user(form.username.data.strip())
        if user is None or not user.check_password(form.password.data):
            flash(_("Wrong user name or password."), "error")
        elif user.disabled:
            flash(_("This account is disabled. Ask an administrator to enable it."), "error")
        else:
            _fresh_session()
            login_user(user)
            return redirect(_next_or("tasks.index"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    _fresh_session()
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/lang/<code>")
def set_language(code):
    """Switch the interface language, remember it for a logged-in user, go back."""
    if code not in current_app.config["LANGUAGES"]:
        abort(404)
    session["lang"] = code
    if current_user.is_authenticated and current_user.locale != code:
        current_user.locale = code
        db.session.commit()
    return redirect(_next_or("tasks.index"))

