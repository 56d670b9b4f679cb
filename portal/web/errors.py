"""How pages answer a service's refusal (a ``WorkflowError``), in one place.

A view that can do better than an error page (show the form again with its
errors, go back to the page the action came from) catches the error itself;
anything else reaches ``init_app``'s handler, which rolls the transaction back
and shows the error page with the service's message and status (404 for what
is missing or hidden, 403, 409, 422).
"""
from flask import flash, redirect, request
from flask_babel import gettext as _

from portal.errors import NotFound, ValidationFailed, WorkflowError
from portal.infra.extensions import db


def back_with_message(exc, url, message=None):
    """Nothing changed: back to ``url``, saying why (``message``, else the error's)."""
    db.session.rollback()
    flash(message or page_message(exc) or exc.message,
          "warning" if exc.status == 409 else "error")
    return redirect(url)


def init_app(app, render_error):
    """Pages answer an uncaught WorkflowError with ``render_error(status, message)``
    (the API blueprint has its own handler, which takes precedence there), and
    refuse text no database column can hold (in a field, or an uploaded file's name)
    before any view reads it."""

    @app.before_request
    def _refuse_nul_characters():
        # PostgreSQL refuses NUL in text (an error, not a stored value); the API
        # checks its own input against its schemas.
        if request.path.startswith("/api/"):
            return None
        values = [*_all_values(request.args), *_all_values(request.form),
                  *(upload.filename or "" for _name, upload in request.files.items(multi=True))
                  ] if request.method in ("GET", "POST") else []
        if any("\x00" in value for value in values):
            return render_error(400, _("The form holds a NUL character, which no field "
                                       "accepts. Remove it and send the form again."))
        return None

    @app.errorhandler(WorkflowError)
    def _workflow_error(exc):
        db.session.rollback()
        return render_error(exc.status, page_message(exc))


def _all_values(multidict):
    """Every value of a query string or form, repeated keys included; an uploaded file's name is
    text the pages store too (an import's name)."""
    return (value for _name, value in multidict.items(multi=True))


def page_message(exc):
    """What the page says: nothing particular for NotFound (a hidden object is
    not told apart from a missing one), each field's problem for a form error."""
    if isinstance(exc, NotFound):
        return None
    if isinstance(exc, ValidationFailed) and exc.errors:
        return " ".join(str(message) for message in exc.errors.values())
    return exc.message
