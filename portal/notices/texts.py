"""What a notice says, in the reader's language: its kind's label, one sentence, and links.

Pages call these in the request's locale; e-mails call them under ``force_locale`` with the
batch creator's language. Links in e-mails need the portal's address, which a worker cannot learn
from a request: it is ``PORTAL_URL`` in the configuration, else Flask's ``SERVER_NAME``, else
the address ``make run`` serves (``http://127.0.0.1:PORT``); workers and ``make run`` say so at
start (``portal_url_warning``), since people elsewhere cannot open such links.
"""
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _, lazy_gettext as _l

KIND_LABELS = {
    "finished": _l("Finished"),
    "finished_with_errors": _l("Finished with errors"),
    "cancelled": _l("Cancelled"),
    "retry_limit": _l("At the retry limit"),
}
KIND_BADGES = {"finished": "success", "finished_with_errors": "danger", "cancelled": "dark",
               "retry_limit": "warning"}


def kind_label(kind):
    return str(KIND_LABELS.get(kind, kind))


def summary(kind, batch_number, task_id=None):
    """One sentence about the event."""
    if kind == "finished":
        return _("Batch %(number)s finished.", number=batch_number)
    if kind == "finished_with_errors":
        return _("Batch %(number)s finished with errors.", number=batch_number)
    if kind == "cancelled":
        return _("Batch %(number)s was cancelled.", number=batch_number)
    if task_id is not None:
        return _("An item of batch %(number)s reached the retry limit: task %(task)s is back "
                 "for handling by hand.", number=batch_number, task=task_id)
    return _("An item of batch %(number)s reached the retry limit.", number=batch_number)


def portal_url():
    """The portal's address as people reach it, without a trailing slash."""
    configured = current_app.config.get("PORTAL_URL")
    if configured:
        return configured.rstrip("/")
    server_name = current_app.config.get("SERVER_NAME")
    if server_name:
        scheme = current_app.config.get("PREFERRED_URL_SCHEME") or "http"
        return f"{scheme}://{server_name}{current_app.config.get('APPLICATION_ROOT') or ''}".rstrip("/")
    return served_url(current_app.config.get("PORT") or 5000)


def served_url(port):
    """The address ``make run`` serves the portal at."""
    return f"http://127.0.0.1:{port}"


def portal_url_warning(address=None):
    """What to tell at start when PORTAL_URL is unset (None when it is set); ``address``: where
    links will point instead (by default, where ``portal_url`` says)."""
    if current_app.config.get("PORTAL_URL"):
        return None
    return (f"PORTAL_URL is unset: links in e-mails point to {address or portal_url()}. Set PORTAL_URL "
            f"to the address people reach the portal at.")


def external_url(endpoint, **values):
    """An absolute URL of one of the portal's pages, built without a request (workers)."""
    parts = urlsplit(portal_url())
    adapter = current_app.url_map.bind(parts.netloc, script_name=parts.path or "/",
                                       url_scheme=parts.scheme)
    return adapter.build(endpoint, values, force_external=True)


def notice_target(batch_id, item_id=0):
    """(endpoint, values) of the page a notice leads to: the item's page for an item event,
    else the batch's page."""
    if item_id:
        return "batches.item", {"batch_id": batch_id, "item_id": item_id}
    return "batches.show", {"batch_id": batch_id}
