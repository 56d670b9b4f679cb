"""The JSON API, /api/v1 (contract (docs/contract.md) section 4).

Every request carries ``Authorization: Bearer <token>``; errors are
``{"error": "..."}`` plus ``"errors": {field: message}`` for validation.
Route modules: ``workflow`` (instances, nodes, tasks), ``batches``, ``excel``.
"""
from flask import Blueprint, g, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from portal.auth_loader import user_from_bearer_token
from portal.extensions import csrf, db
from portal.workflow.errors import WorkflowError

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # token auth, no cookies: nothing for a forged request to ride on


MAX_ID = 2**31 - 1  # the id columns are 32-bit integers


class ApiError(Exception):
    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


@bp.before_request
def _authenticate():
    user = user_from_bearer_token()
    if user is None:
        raise ApiError(401, _("A valid API token is required."))
    g.api_user = user
    db.session.commit()  # last_used_at


def api_user():
    return g.api_user


def json_body():
    """The request's JSON object, or a 400 that says what is wrong."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, _("The body must be a JSON object."))
    return data


def int_arg(name, default=None, minimum=None, maximum=None):
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, _("%(name)s must be a whole number.", name=name))
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ApiError(400, _("%(name)s is out of range.", name=name))
    return value


def paginate(query, id_column, default_limit=50, max_limit=500):
    """Keyset pagination on an ascending id: (rows, next_cursor)."""
    limit = int_arg("limit", default_limit, 1, max_limit)
    cursor = int_arg("cursor", None, 0, MAX_ID)
    if cursor is not None:
        query = query.where(id_column > cursor)
    rows = db.session.execute(query.order_by(id_column).limit(limit + 1)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def _error(status, message, errors=None):
    body = {"error": message}
    if errors:
        body["errors"] = {k: str(v) for k, v in errors.items()}
    return body, status


@bp.errorhandler(ApiError)
def _api_error(exc):
    db.session.rollback()
    return _error(exc.status, exc.message, exc.errors)


@bp.errorhandler(WorkflowError)
def _workflow_error(exc):
    db.session.rollback()
    return _error(exc.status, exc.message, getattr(exc, "errors", None))


@bp.errorhandler(HTTPException)
def _http_error(exc):
    db.session.rollback()
    return _error(exc.code, exc.description or exc.name)


from portal.api import batches, excel, workflow  # noqa: E402,F401  (routes register on bp)
