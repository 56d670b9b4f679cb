"""How pages answer a service's refusal (a ``WorkflowError``), in one place.

A view that can do better than an error page (show the form again with its
errors, go back to the page the action came from) catches the error itself;
anything else reaches ``init_app``'s handler, which rolls the transaction back
and shows the error page with the service's message and status (404 for what
is missing or hidden, 403, 409, 422).
"""
from flask import flash, redirect

from portal.extensions import db
from portal.errors import NotFound, ValidationFailed, WorkflowError


def back_with_message(exc, url, message=None):
    """Nothing changed: back to ``url``, saying why (``message``, else the error's)."""
    db.session.rollback()
    flash(message or page_message(exc) or exc.message,
          "warning" if exc.status == 409 else "error")
    return redirect(url)


def init_app(app, render_error):
    """Pages answer an uncaught WorkflowError with ``render_error(status, message)``
    (the API blueprint has its own handler, which takes precedence there)."""

    @app.errorhandler(WorkflowError)
    def _workflow_error(exc):
        db.session.rollback()
        return render_error(exc.status, page_message(exc))


def page_message(exc):
    """What the page says: nothing particular for NotFound (a hidden object is
    not told apart from a missing one), each field's problem for a form error."""
    if isinstance(exc, NotFound):
        return None
    if isinstance(exc, ValidationFailed) and exc.errors:
        return " ".join(str(message) for message in exc.errors.values())
    return exc.message
