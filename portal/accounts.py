"""User accounts, login sessions, passwords and API tokens (services; the caller commits).

A login is a ``UserSession`` row: the cookie carries a random key, the row its
digest. Deleting rows is how sessions end: logout ends one, a password change
every other one of that user, a password reset or disabling all of them. API
tokens are revoked one by one and stay revoked whatever happens to the user.
"""
import secrets
import unicodedata
from datetime import timedelta
from functools import lru_cache

from flask import current_app
from flask_babel import gettext as _
from werkzeug.security import generate_password_hash

from portal.errors import NotFound, ValidationFailed
from portal.infra.extensions import db
from portal.models import ApiToken, User, UserSession
from portal.models import users as user_models
from portal.models.base import is_db_id, utcnow
from portal.models.users import ROLES, digest

MIN_PASSWORD_LENGTH = 8
MAX_TOKEN_NAME = 80
MAX_TOKEN_DAYS = 3650


def all_users():
    return db.session.execute(db.select(User).order_by(User.username)).scalars().all()


def find_user(username):
    return db.session.execute(
        db.select(User).where(User.username == username)).scalar_one_or_none()


def _password_errors(password, field="password"):
    if not password or len(password) < MIN_PASSWORD_LENGTH:
        return {field: _("At least 8 characters.")}
    return {}


def username_key(username):
    """What a user name reads as: NFKC (full-width letters are the ASCII ones) and case folded.

    Two names with the same key name the same person to a reader (``alice``, ``Alice``, ``ａｌｉｃｅ``)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def username_problem(username):
    """Why ``username`` (stripped) cannot name a new user, or None; the one rule of the admin page and
    the CLI. Names of existing users are left as they are, clashing or not."""
    if not username or len(username) > 80 or not username.replace("_", "").replace(".", "").replace("-", "").isalnum():
        return _("Use 1-80 letters, digits, dot, dash or underscore.")
    if find_user(username) is not None:
        return _("This name is taken.")
    key = username_key(username)
    # Every name is read: a key column could not be unique over the lookalikes made before this rule.
    for existing in db.session.execute(db.select(User.username)).scalars():
        if username_key(existing) == key:
            return _("This name differs from the existing user %(name)s only by case or character width.",
                     name=existing)
    return None


def create_user(username, password, role="user", workflow_roles="", locale=None):
    errors = {}
    username = (username or "").strip()
    problem = username_problem(username)
    if problem is not None:
        errors["username"] = problem
    if role not in ROLES:
        errors["role"] = _("Choose user, supervisor or admin.")
    errors.update(_password_errors(password))
    if errors:
        raise ValidationFailed(errors)
    user = User(username=username, role=role, workflow_roles=" ".join(workflow_roles.split()),
                locale=locale)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


def require_user(username):
    user = find_user(username)
    if user is None:
        raise NotFound(_("No user named %(name)s.", name=username))
    return user


# --- logging in ---------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _dummy_hash(method):
    """A hash of a random password, made with the configured method."""
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def authenticate(username, password):
    """The enabled user with this name and password, else None.

    Every refusal costs one password hash check (a dummy one for an unknown
    name) and looks the same to the caller, so neither the answer nor its time
    tells whether the name exists or the account is disabled.
    """
    user = find_user(username) if username else None
    if user is None:
        user_models.check_password_hash(
            _dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password or "")
        return None
    if not user.check_password(password or "") or user.disabled:
        return None
    return user


def start_session(user):
    """A new login session for ``user``; returns its key (for the cookie only).

    Sessions that went idle for too long, anyone's, are purged on the way:
    a closed browser never logs out, so its row would stay forever.
    """
    cutoff = _idle_cutoff()
    if cutoff is not None:
        db.session.execute(db.delete(UserSession).where(UserSession.last_seen_at < cutoff))
    key = secrets.token_urlsafe(32)
    db.session.add(UserSession(user_id=user.id, key_hash=digest(key)))
    db.session.flush()
    user.session_key = key
    return key


def _idle_cutoff():
    hours = current_app.config["SESSION_IDLE_HOURS"]
    return utcnow() - timedelta(hours=hours) if hours and hours > 0 else None


def live_session(key):
    """The session row of ``key`` when it is live (known, not idle too long, its
    user enabled), with ``row.user.session_key`` set; else None."""
    if not key or not isinstance(key, str):
        return None
    row = db.session.execute(
        db.select(UserSession).where(UserSession.key_hash == digest(key))).scalar_one_or_none()
    if row is None or row.user.disabled:
        return None
    cutoff = _idle_cutoff()
    if cutoff is not None and row.last_seen_at < cutoff:
        return None
    row.user.session_key = key
    return row


def touch_due(row):
    """True when the row's last use was recorded more than SESSION_TOUCH_SECONDS
    ago: one write per session and minute, not one per request."""
    return row.last_seen_at < utcnow() - timedelta(
        seconds=current_app.config["SESSION_TOUCH_SECONDS"])


def touch_session(key):
    """Record that session ``key`` was used now."""
    db.session.execute(db.update(UserSession).where(UserSession.key_hash == digest(key))
                       .values(last_seen_at=utcnow()))


def end_session(key):
    """End one session (logout)."""
    if key:
        db.session.execute(db.delete(UserSession).where(UserSession.key_hash == digest(key)))


def end_sessions(user, keep_key=None):
    """End every session of ``user``, except ``keep_key``'s when given."""
    query = db.delete(UserSession).where(UserSession.user_id == user.id)
    if keep_key:
        query = query.where(UserSession.key_hash != digest(keep_key))
    db.session.execute(query)


def count_sessions(user):
    return db.session.execute(db.select(db.func.count()).select_from(UserSession)
                              .where(UserSession.user_id == user.id)).scalar_one()


# --- passwords and disabling ----------------------------------------------------------

def change_password(user, old_password, new_password, keep_key):
    """The user changes their own password; every other session of theirs ends."""
    errors = {}
    if not user.check_password(old_password or ""):
        errors["old_password"] = _("This is not your current password.")
    errors.update(_password_errors(new_password, "new_password"))
    if errors:
        raise ValidationFailed(errors)
    user.set_password(new_password)
    end_sessions(user, keep_key=keep_key)
    db.session.flush()
    return user


def reset_password(user, new_password):
    """An administrator sets a new password; every session of the user ends."""
    errors = _password_errors(new_password)
    if errors:
        raise ValidationFailed(errors)
    user.set_password(new_password)
    end_sessions(user)
    db.session.flush()
    return user


def set_disabled(user, disabled):
    """Disable (ending every session; tokens are refused while disabled) or enable."""
    user.disabled = disabled
    if disabled:
        end_sessions(user)
    db.session.flush()
    return user


# --- API tokens ---------------------------------------------------------------------------

def create_token(user, name=None, expires_days=None):
    """Store a new token's hash; returns (row, token). The token is shown once."""
    name = (name or "").strip()
    errors = {}
    if len(name) > MAX_TOKEN_NAME:
        errors["name"] = _("At most %(n)s characters.", n=MAX_TOKEN_NAME)
    if expires_days is not None and not 1 <= expires_days <= MAX_TOKEN_DAYS:
        errors["expires_days"] = _("Give a number of days from 1 to %(n)s.", n=MAX_TOKEN_DAYS)
    if errors:
        raise ValidationFailed(errors)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(user_id=user.id, token_hash=ApiToken.digest(token), name=name, created_at=now,
                   expires_at=now + timedelta(days=expires_days) if expires_days else None)
    db.session.add(row)
    db.session.flush()
    return row, token


def issue_token(user, name=None, expires_days=None):
    """Store a new token's hash and return the token itself (shown once)."""
    return create_token(user, name, expires_days)[1]


def token_user(token):
    """The enabled user of a live (not revoked, not expired) token, else None.
    Marks the token used; the caller commits."""
    if not token:
        return None
    row = db.session.execute(
        db.select(ApiToken).where(ApiToken.token_hash == ApiToken.digest(token))
    ).scalar_one_or_none()
    now = utcnow()
    if row is None or row.status(now) != "active" or row.user.disabled:
        return None
    row.last_used_at = now
    return row.user


def list_tokens(user):
    return db.session.execute(db.select(ApiToken).where(ApiToken.user_id == user.id)
                              .order_by(ApiToken.id)).scalars().all()


def revoke_token(token_id, user=None):
    """Revoke one token (of ``user`` when given); revoking twice changes nothing."""
    row = db.session.get(ApiToken, token_id) if is_db_id(token_id) else None
    if row is None or (user is not None and row.user_id != user.id):
        raise NotFound(_("No API token %(id)s.", id=token_id))
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.flush()
    return row
