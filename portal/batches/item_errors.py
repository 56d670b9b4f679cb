"""Why a batch item did not succeed: what it stores, and how each reader sees it.

An item that failed or was ignored stores

- ``error_code``: a stable code for scripts and filters: ``validation``, the reason an
  item was ignored (``done``, ``suspended``, ``unavailable``...), a user error's code
  (``user_disabled``...), ``unexpected`` or ``lease_expired``;
- ``error_detail``: the message as data (``portal.messages``), rendered for each reader
  in their language with the node's labels; for a validation failure
  ``{"fields": {key: message}}``, and ``field_errors`` holds the same per-field messages;
- ``error``: the English rendering, for the API and logs (and what items stored before
  messages became data show, as written then).

``error_kind`` keeps its meaning (validation | user | unexpected for failed items, the
reason for ignored ones): retries and corrections decide by it.
"""
from dataclasses import dataclass

from flask_babel import force_locale, gettext as _

from portal import messages
from portal.errors import CONFLICT_MESSAGES
from portal.excel import layout
from portal.infra.extensions import db
from portal.models import Batch, Node

API_LOCALE = "en"
VALIDATION = "validation"
UNEXPECTED = "unexpected"

# The codes of the user errors the workflow services raise, by their message's msgid.
USER_ERROR_CODES = {
    "User %(name)s is disabled.": "user_disabled",
    "Node %(node)s is assigned to unknown user %(name)s.": "unknown_assignee",
    "Node %(node)s is assigned to the user named by the variable %(variable)s, "
    "which holds no user name.": "no_assignee",
    "The process cannot go on with these data: %(detail)s": "engine_refused",
}


@dataclass(frozen=True)
class Failure:
    """What an item that did not succeed stores (see the module docstring)."""
    kind: str                   # error_kind
    code: str                   # error_code
    detail: object              # error_detail: message data (a plain string for words
                                # that are not the portal's own)
    field_errors: dict | None = None

    def english(self, node):
        """The ``error`` column's text."""
        return english(self.detail, node)


def invalid(errors):
    """A validation failure from ``{field key: message}`` (Messages or plain text)."""
    fields = {key: messages.data_of(problem) for key, problem in errors.items()}
    return Failure(VALIDATION, VALIDATION, {"fields": fields}, fields)


def ignored(reason, text=None):
    """An item ignored for ``reason`` (a ``portal.errors`` reason code)."""
    return Failure(reason, reason, reason_detail(reason, text))


def reason_detail(reason, text=None):
    """The message of a reason code; ``text`` (or the code) for a code without one."""
    lazy = CONFLICT_MESSAGES.get(reason)
    if lazy is None:
        return text or reason
    # English is the source language: a message rendered in English is its msgid.
    with force_locale(API_LOCALE):
        return {"msgid": str(lazy), "params": {}}


def user_error(text):
    """A user error, from the exception's message (a ``Message``, or plain text)."""
    detail = messages.data_of(text)
    code = USER_ERROR_CODES.get(detail.get("msgid")) if isinstance(detail, dict) else None
    return Failure("user", code or "user", detail)


def unexpected(detail, code=UNEXPECTED):
    """An unexpected failure: a message (lease expired) or an exception's own words."""
    return Failure(UNEXPECTED, code, messages.data_of(detail))


# --- labels and rendering --------------------------------------------------------------------

def key_labels(node):
    """{key: label} of every key an item's error may name: the node's slots as its forms and
    templates show them (task id, title, action, comment, then its fields), its table fields
    and the sheet, in the current locale (the fixed slots' labels are the portal's own words).
    (``portal.web.tasks.field_labels`` is another thing: a node's own fields, for a stored form.)"""
    labels = {slot.key: layout.strip_mark(slot.label) for slot in layout.node_slots(node)}
    labels.update({t["key"]: t.get("label", t["key"]) for t in layout.table_fields(node)})
    labels["sheet"] = _("Sheet")
    return labels


def english(detail, node):
    """``detail`` rendered in English with the node's English labels."""
    if detail is None or isinstance(detail, str):
        return detail
    with force_locale(API_LOCALE):
        return messages.render(detail, key_labels(node) if node is not None else None)


def text(record, labels):
    """The error of an item or an attempt for the current reader."""
    return stored_text(record.error_detail, record.error, labels)


def stored_text(detail, error, labels):
    """An error for the current reader: its message rendered, or its stored text when it
    has no message (stored before messages were data)."""
    if detail is not None:
        return messages.render(detail, labels)
    return error or ""


def field_texts(field_errors, labels):
    """{field key: text} of an item's field errors for the current reader."""
    return messages.render_fields(field_errors, labels)


def labelled_field_texts(field_errors, labels):
    """[(label, text)] of an item's field errors for the current reader."""
    return [(str(labels.get(key) or key), problem)
            for key, problem in field_texts(field_errors, labels).items()]


def texts(items, node):
    """{item id: error text} of items of one node, for the current reader."""
    labels = key_labels(node)
    return {item.id: text(item, labels) for item in items}


def texts_across_batches(items):
    """{item id: error text} of items of any batches (their nodes read in one query)."""
    batch_ids = {item.batch_id for item in items}
    if not batch_ids:
        return {}
    rows = db.session.execute(db.select(Batch.id, Node).join(Node, Batch.node_id == Node.id)
                              .where(Batch.id.in_(batch_ids))).all()
    labels = {batch_id: key_labels(node) for batch_id, node in rows}
    return {item.id: text(item, labels.get(item.batch_id)) for item in items}


def english_field_errors(field_errors, labels):
    """{field key: English text}; ``labels`` made in English (``english_labels``)."""
    if field_errors is None:
        return None
    with force_locale(API_LOCALE):
        return messages.render_fields(field_errors, labels)


def english_labels(node):
    """The node's labels as an English reader sees them (the API's)."""
    with force_locale(API_LOCALE):
        return key_labels(node)
