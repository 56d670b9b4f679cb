"""Typed refusals of the portal's services (workflow, batches, accounts, Excel),
each with the HTTP status it maps to; pages and the API turn them into answers.

``reason`` is a stable code (used for batch items ignored for that reason);
``message`` is readable text for people: a ``portal.messages.Message`` when the
service made one (a batch item stores its data and renders it for each reader),
else a plain string.
"""
from flask_babel import lazy_gettext as _l

from portal.messages import Message


class WorkflowError(Exception):
    status = 400
    reason = "error"

    def __init__(self, message=None, reason=None):
        if message is None:
            message = self.reason
        elif not isinstance(message, Message):
            message = str(message)
        super().__init__(str(message))
        self.message = message
        if reason:
            self.reason = reason


class NotFound(WorkflowError):
    """Missing, or not visible to the caller (the two are not told apart)."""
    status = 404
    reason = "gone"


class Conflict(WorkflowError):
    """The state forbids the action: done, suspended, countersigning, locked."""
    status = 409


class ValidationFailed(WorkflowError):
    status = 422
    reason = "validation"

    def __init__(self, errors, message=None):
        super().__init__(message or _l("The form has errors."))
        self.errors = errors


class UserError(WorkflowError):
    """The acting user may not act (e.g. disabled); waits for a person."""
    status = 403
    reason = "user"


CONFLICT_MESSAGES = {
    "done": _l("The task has already been handled."),
    "suspended": _l("The instance is suspended."),
    "countersigning": _l("The task waits for a countersignature."),
    "locked": _l("The task is locked by someone else."),
    "gone": _l("The task does not exist."),
    "not_yours": _l("The task is not yours to handle."),
    # Everything about a task its reader may not open: missing, someone else's,
    # and any state of a task they cannot see (CONTRACT: no title, one reason).
    "unavailable": _l("The task is not available to you."),
    "wrong_node": _l("The task is not at this node."),
    "cancelled": _l("Cancelled."),
    "duplicate": _l("The task appears more than once."),
}


def reason_message(reason, default=None):
    """The readable text of a reason code (``default`` for codes without one)."""
    message = CONFLICT_MESSAGES.get(reason)
    return str(message) if message is not None else (default or reason)


def conflict(reason):
    return Conflict(CONFLICT_MESSAGES[reason], reason=reason)
