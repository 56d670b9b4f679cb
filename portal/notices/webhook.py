"""Webhook deliveries: the JSON body, its HMAC-SHA256 signature, and one POST.

The body is ``{"event", "batch", "item_id", "at"}``: the notice's kind, the batch as the API shows
it (``GET /api/v1/batches/<id>``) when the delivery was first tried, the item for an item event
(else null) and when the event happened (UTC). Headers: ``X-Portal-Signature: sha256=<hex
HMAC-SHA256 of the body bytes, keyed with the endpoint's secret>`` and ``X-Portal-Delivery: <id>``
(the same on every retry of one delivery, so a receiver can drop repeats). Redirects are not
followed: a URL that answers with one is a failed attempt.

The POST goes through ``transport``: ``WEBHOOK_TIMEOUT_SECONDS`` bounds the whole attempt, and only
an address ``addresses`` allows is reached (checked again at every attempt, whatever was checked
when the URL was registered).
"""
import hashlib
import hmac
import json
import time

from flask import current_app

from portal.batches.serialize import batch_to_dict
from portal.notices import addresses, transport
from portal.notices.attempt import Outcome

USER_AGENT = "batch-approval-portal-webhook/1"


def _iso(value):
    return value.isoformat() + "Z" if value is not None else None


def compose(notice, batch):
    """The JSON body (text) of the notice's webhook deliveries."""
    return json.dumps({"event": notice.kind, "batch": batch_to_dict(batch),
                       "item_id": notice.item_id or None, "at": _iso(notice.created_at)},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def signature(body, secret):
    """The X-Portal-Signature header's value for ``body`` (bytes)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send(claimed):
    """POST the body to the endpoint once; an Outcome (2xx is delivered, anything else is not)."""
    body = claimed.body.encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               "X-Portal-Signature": signature(body, claimed.secret),
               "X-Portal-Delivery": str(claimed.delivery_id)}
    config = current_app.config
    started = time.monotonic()
    try:
        code = transport.post(claimed.target, body, headers, deadline_seconds(),
                              addresses.allowed_networks(config))
    except transport.DeliveryError as exc:
        return Outcome(False, None, str(exc), _ms_since(started))
    delivered = 200 <= code < 300
    return Outcome(delivered, code, None if delivered else f"HTTP {code}", _ms_since(started))


def deadline_seconds():
    """The time one attempt may take, all of it."""
    return max(1, int(current_app.config["WEBHOOK_TIMEOUT_SECONDS"]))


def _ms_since(started):
    return int((time.monotonic() - started) * 1000)
