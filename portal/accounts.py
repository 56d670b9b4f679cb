"""User accounts and API tokens (services; the caller commits)."""
import secrets

from flask_babel import gettext as _

from portal.extensions import db
from portal.models import ApiToken, User
from portal.models.users import ROLES
from portal.workflow.errors import NotFound, ValidationFailed


def find_user(username):
    return db.session.execute(
        db.select(User).where(User.username == username)).scalar_one_or_none()


def create_user(username, password, role="user", workflow_roles="", locale=None):
    errors = {}
    username = (username or "").strip()
    if not username or len(username) > 80 or not username.replace("_", "").replace(".", "").replace("-", "").isalnum():
        errors["username"] = _("Use 1-80 letters, digits, dot, dash or underscore.")
    elif find_user(username) is not None:
        errors["username"] = _("This name is taken.")
    if role not in ROLES:
        errors["role"] = _("Choose user, supervisor or admin.")
    if not password or len(password) < 8:
        errors["password"] = _("At least 8 characters.")
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


def issue_token(user):
    """Store a new token's hash and return the token itself (shown once)."""
    token = secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, token_hash=ApiToken.digest(token)))
    db.session.flush()
    return token


def set_disabled(user, disabled):
    user.disabled = disabled
    db.session.flush()
    return user
