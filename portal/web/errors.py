"""How pages answer a service's refusal (a ``WorkflowError``), in one place.

A view that can do better than an error page (show the form again with its
errors, go back to the page the action came from) catches the error itself;
anything else reaches ``init_app``'s handler, which rolls the transaction back
and shows the error page with the service's message and status (404 for what
is missing or hidden, 403, 409, 422).
"""
from flask import flash, redirect

from portal.extensions import db
from portal.errors import NotFound, WorkflowError


def back_with_message(exc, url, message=None):
    """Nothing changed: back to ``url``, saying why (``message``, else the error's)."""
    db.session.rollback()
    flash(message or exc.message, "warning" if exc.status == 409 else "error")
    return redirect(url)


def init_app(app, render_error):
    """Pages answer an uncaught WorkflowError with ``render_error(status, message)``
    (the API blueprint has its own handler, which takes precedence there)."""

    @app.errorhandler(WorkflowError)
    def _workflow_error(exc):
        db.session.rollback()
        # A hidden object is not told apart from a missing one, whatever the message.
        message = None if isinstance(exc, NotFound) else exc.message
        return render_error(exc.status, message)
