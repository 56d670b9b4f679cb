"""Which channels a user wants besides the in-app notice, and their webhook endpoints.

A user without a preference row gets the defaults: no e-mail (there is no address to send to yet),
webhooks on (they reach only endpoints the user registered). A webhook URL must be http or https,
with a host and without credentials in it, and its host must not be on a loopback, private or local
network (``addresses``; unless ``WEBHOOK_ALLOWED_NETWORKS`` allows it); anything else is refused
when it is registered. A name that does not resolve yet is accepted: every attempt resolves it and
checks again. An endpoint's secret can be replaced; the old one signs nothing after that.
"""
import re
import secrets
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _

from portal.errors import NotFound, ValidationFailed
from portal.infra.extensions import db
from portal.models import ApiToken, NoticePreference, WebhookEndpoint
from portal.models.base import is_db_id, utcnow
from portal.notices import addresses

MAX_URL_LENGTH = 2000
MAX_EMAIL_LENGTH = 254
MAX_ENDPOINTS = 10
# One address, no display name: what an SMTP envelope takes.
EMAIL_PATTERN = re.compile(r"[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+\.[^@\s<>(),;:\"\[\]\\]+")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")
# How long registering a URL waits for its host name to resolve.
REGISTRATION_LOOKUP_SECONDS = 5


def preference_of(user_id):
    """The user's row, or an unsaved one holding the defaults."""
    row = db.session.get(NoticePreference, user_id)
    return row if row is not None else NoticePreference(user_id=user_id, email_enabled=False,
                                                         email_address=None, webhook_enabled=True)


def save_preference(user, email_enabled, email_address, webhook_enabled):
    """Store the user's channels; ValidationFailed (nothing stored) for a bad address."""
    address = (email_address or "").strip()
    errors = {}
    if address and (len(address) > MAX_EMAIL_LENGTH or not EMAIL_PATTERN.fullmatch(address)):
        errors["email_address"] = _("Give one e-mail address, such as name@example.com.")
    elif email_enabled and not address:
        errors["email_address"] = _("Give the address the e-mails go to.")
    if errors:
        raise ValidationFailed(errors)
    row = db.session.get(NoticePreference, user.id)
    if row is None:
        row = NoticePreference(user_id=user.id)
        db.session.add(row)
    row.email_enabled, row.email_address = bool(email_enabled), address or None
    row.webhook_enabled, row.updated_at = bool(webhook_enabled), utcnow()
    db.session.flush()
    return row


def url_problem(url):
    """Why ``url`` cannot be a webhook URL, or None when it can."""
    if not url:
        return _("Give the URL the notices are posted to.")
    if len(url) > MAX_URL_LENGTH:
        return _("At most %(n)s characters.", n=MAX_URL_LENGTH)
    if CONTROL_CHARACTERS.search(url):
        return _("A URL holds no spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return _("This is not a valid URL.")
    if parts.scheme.lower() not in ("http", "https"):
        return _("Only http and https URLs are accepted.")
    if not parts.hostname:
        return _("The URL names no host.")
    if parts.username is not None or parts.password is not None:
        return _("Put no user name or password in the URL; check the signature instead.")
    if "%" in parts.hostname:
        return _("Write the host name without percent-escapes.")
    return _address_problem(parts)


def _address_problem(parts):
    """Why the URL's host may not receive notices, or None (also when it does not resolve yet)."""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        addresses.checked(parts.hostname, port, addresses.allowed_networks(current_app.config),
                          REGISTRATION_LOOKUP_SECONDS)
    except addresses.Refused:
        return _("Notices are not posted to loopback, private or local network addresses.")
    except addresses.Unresolved:
        return None
    return None


def active_tokens(user, now=None):
    """The user's tokens an endpoint may be tied to: not revoked, not expired."""
    now = now or utcnow()
    return [token for token in db.session.execute(
        db.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)).scalars()
        if token.status(now) == "active"]


def endpoints_of(user):
    """The user's endpoints that were not removed, oldest first."""
    return db.session.execute(
        db.select(WebhookEndpoint).where(WebhookEndpoint.user_id == user.id,
                                         WebhookEndpoint.removed_at.is_(None))
        .order_by(WebhookEndpoint.id)).scalars().all()


def add_endpoint(user, url, token_id=None):
    """Register a webhook URL (for every notice of the user, or only while one of their tokens
    lives); returns the endpoint, whose secret the caller shows once."""
    url = (url or "").strip()
    errors = {}
    problem = url_problem(url)
    if problem:
        errors["url"] = problem
    if token_id is not None and token_id not in {token.id for token in active_tokens(user)}:
        errors["token_id"] = _("Choose one of your active API tokens.")
    if len(endpoints_of(user)) >= MAX_ENDPOINTS:
        errors["url"] = _("At most %(n)s webhook URLs; remove one first.", n=MAX_ENDPOINTS)
    if errors:
        raise ValidationFailed(errors)
    endpoint = WebhookEndpoint(user_id=user.id, token_id=token_id, url=url,
                               secret=_new_secret(), created_at=utcnow())
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def _own_endpoint(user, endpoint_id):
    """One of the user's endpoints that was not removed (NotFound for anyone else's)."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if is_db_id(endpoint_id) else None
    if endpoint is None or endpoint.user_id != user.id or endpoint.removed_at is not None:
        raise NotFound(_("Webhook not found."))
    return endpoint


def remove_endpoint(user, endpoint_id):
    """Stop posting to one of the user's endpoints (NotFound for anyone else's)."""
    endpoint = _own_endpoint(user, endpoint_id)
    endpoint.removed_at = utcnow()
    db.session.flush()
    return endpoint


def _new_secret():
    return secrets.token_hex(32)


def rotate_secret(user, endpoint_id):
    """Give one of the user's endpoints a new secret (NotFound for anyone else's); returns the
    endpoint, whose new secret the caller shows once. Every attempt claimed from now on is signed
    with it (an attempt reads the secret when it is claimed)."""
    endpoint = _own_endpoint(user, endpoint_id)
    endpoint.secret = _new_secret()
    db.session.flush()
    return endpoint


def live_endpoints(user_id, now=None):
    """Endpoints that receive the user's notices now: not removed, and their token (if any) active."""
    now = now or utcnow()
    rows = db.session.execute(
        db.select(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id,
                                         WebhookEndpoint.removed_at.is_(None))
        .order_by(WebhookEndpoint.id)).scalars().all()
    return [row for row in rows if endpoint_is_live(row, now)]


def endpoint_is_live(endpoint, now=None):
    if endpoint is None or endpoint.removed_at is not None:
        return False
    return endpoint.token_id is None or (
        endpoint.token is not None and endpoint.token.status(now or utcnow()) == "active")
