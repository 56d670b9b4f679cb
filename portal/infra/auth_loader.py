"""How a request finds its user: the session cookie (Flask-Login) or an API token.

The cookie names a login session row (see ``portal.accounts``), not the user,
so a session ended on the server is ended for every copy of its cookie.
"""
from flask import current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from portal import accounts
from portal.infra.extensions import db, login_manager


def init_app(app):
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "warning"

    @login_manager.user_loader
    def load_user(session_key):
        row = accounts.live_session(session_key)
        if row is None:
            return None
        if accounts.touch_due(row):
            g.login_session_touch = session_key
        return row.user

    @app.after_request
    def _touch_login_session(response):
        """Record the session's last use once the view is done, in a transaction
        of its own: the view's uncommitted work, if any, is dropped as it would
        be at teardown, never committed by this."""
        key = g.pop("login_session_touch", None)
        if key is not None:
            db.session.rollback()
            try:
                accounts.touch_session(key)
                db.session.commit()
            except SQLAlchemyError:  # best effort: the answer is ready, send it
                db.session.rollback()
                current_app.logger.warning("could not record a login session's last use",
                                           exc_info=True)
        return response


def user_from_bearer_token():
    """The enabled user whose live token is in ``Authorization: Bearer``, else None."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return accounts.token_user(header[7:].strip())
