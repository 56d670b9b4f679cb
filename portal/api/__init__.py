"""The JSON API, /api/v1 (contract (docs/contract.md) section 4).

Every request carries ``Authorization: Bearer <token>`` (except the public
OpenAPI document and its viewer); errors are ``{"error": "..."}`` plus
``"errors": {field: message}`` for validation. Each view declares its input
and answers with ``@operation`` (``portal.api.operations``); the input is
checked before the view runs (``portal.api.validation``) and the same
declarations are published at ``/api/v1/openapi.json`` (``portal.api.openapi``).
Route modules: ``workflow`` (instances, nodes, tasks), ``batches``, ``excel``,
``openapi``.
"""
from flask import Blueprint, current_app, g, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from portal.api.errors import ApiError
from portal.api.operations import check_described, operation_of
from portal.api.validation import check_request
from portal.errors import WorkflowError
from portal.infra.auth_loader import user_from_bearer_token
from portal.infra.extensions import csrf, db
from portal.infra.paging import keyset_page
from portal.models.base import MAX_ID

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # token auth, no cookies: nothing for a forged request to ride on




def _operation():
    return operation_of(current_app.view_functions.get(request.endpoint))


@bp.before_request
def _authenticate():
    op = _operation()
    if op is not None and op.public:
        return
    user = user_from_bearer_token()
    if user is None:
        raise ApiError(401, _("A valid API token is required."))
    g.api_user = user
    db.session.commit()  # last_used_at


@bp.before_request
def _check_input():
    """After authentication: a caller without a token learns nothing from a 400."""
    op = _operation()
    if op is not None and request.method != "OPTIONS":  # OPTIONS only lists the methods
        check_request(op)


def api_user():
    return g.api_user


def json_body():
    """The request's JSON object (parsed and checked by ``_check_input``), or a 400."""
    data = g.get("api_json")
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
    """Keyset pagination on an ascending id: (rows, next_cursor), ``limit``
    (1-500) rows after ``cursor``."""
    page = keyset_page(query, id_column, limit=int_arg("limit", default_limit, 1, max_limit),
                       after=int_arg("cursor", None, 0, MAX_ID))
    return page.rows, page.next_cursor


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


from portal.api import batches, excel, openapi, workflow  # noqa: E402,F401  (routes register on bp)

bp.record_once(check_described)  # after the routes: runs when the app registers bp
