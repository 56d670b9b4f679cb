"""People: portal users with one portal role plus workflow roles, their login
sessions and their API tokens."""
import hashlib
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from portal.infra.extensions import db
from portal.models.base import utcnow

ROLES = ("user", "supervisor", "admin")


def digest(secret):
    """SHA-256 of a random secret (session key, API token): only this is stored,
    so a copy of the database does not hand out working credentials."""
    return hashlib.sha256(secret.encode()).hexdigest()


class User(UserMixin, db.Model):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="user")
    # Workflow roles such as "finance", space separated; tasks assigned to
    # "role:finance" may be taken by any user holding it.
    workflow_roles: Mapped[str] = mapped_column(String(255), default="")
    disabled: Mapped[bool] = mapped_column(default=False)
    locale: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # The key of the login session this object was loaded through (not a
    # column): what Flask-Login keeps in the cookie instead of the user id.
    session_key = None

    def set_password(self, password):
        from flask import current_app
        self.password_hash = generate_password_hash(
            password, method=current_app.config["PASSWORD_HASH_METHOD"])

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    def get_id(self):
        """Flask-Login's "alternative token": the cookie names a session row, not
        the user, so deleting the row ends that session wherever the cookie is."""
        if self.session_key is None:
            raise RuntimeError("log in through portal.accounts.start_session")
        return self.session_key

    @property
    def is_active(self):  # Flask-Login refuses inactive users
        return not self.disabled

    @property
    def roles_list(self):
        return [r for r in (self.workflow_roles or "").split() if r]

    @property
    def is_supervisor(self):
        return self.role in ("supervisor", "admin")

    @property
    def is_admin(self):
        return self.role == "admin"

    def __repr__(self):
        return f"<User {self.username}>"


class UserSession(db.Model):
    """One login: the cookie holds the key, the row its SHA-256 digest."""

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    user = db.relationship(User)


class ApiToken(db.Model):
    """An API token; only its SHA-256 digest is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(80), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    # Set once and never cleared: enabling the user again does not revive it.
    revoked_at: Mapped[datetime | None]

    user = db.relationship(User)

    @staticmethod
    def digest(token):
        return digest(token)

    def status(self, now=None):
        """"active", "expired" or "revoked"."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"
