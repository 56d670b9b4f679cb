"""How a request finds its user: the session cookie (Flask-Login) or an API token."""
from flask import request

from portal.extensions import db, login_manager
from portal.models import ApiToken, User
from portal.models.base import utcnow


def init_app(app):
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "warning"

    @login_manager.user_loader
    def load_user(user_id):
        user = db.session.get(User, int(user_id))
        return user if user is not None and not user.disabled else None


def user_from_bearer_token():
    """The enabled user whose token is in ``Authorization: Bearer``, else None."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    token = header[7:].strip()
    if not token:
        return None
    row = db.session.execute(
        db.select(ApiToken).where(ApiToken.token_hash == ApiToken.digest(token))
    ).scalar_one_or_none()
    if row is None or row.user.disabled:
        return None
    row.last_used_at = utcnow()
    return row.user
