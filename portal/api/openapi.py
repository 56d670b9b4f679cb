"""The OpenAPI 3.1 document of /api/v1, and a page that shows it to people.

The document is built from the application's URL map and each view's
``Operation``: paths and methods come from the routes themselves, parameters,
bodies and answers from the schemas the request checks use. Both
``/openapi.json`` and ``/docs`` are public: they describe the API, not data.
"""
import re

from flask import current_app, render_template

from portal.api import bp, schemas
from portal.api.operations import Reply, operation, operation_of

TITLE = "Batch approval portal API"
VERSION = "1.0.0"
DESCRIPTION = """\
Scripts use this API with `Authorization: Bearer <token>` (`flask --app app user token NAME` \
prints one). Bodies are JSON objects (imports: multipart/form-data).

Errors are `{"error": "<readable message>"}`, plus `"errors": {field: message}` for \
validation: 400 malformed input (a body that is not a JSON object or is nested more than \
32 levels; a query parameter or multipart field of the wrong type or out of range), 401 no \
or invalid token, 403 role not allowed, 404 missing or not visible to the caller, 409 state \
conflict, 413 too large, 422 a body field is not valid. Bodies may not name fields an \
operation does not list (422, "Unknown field"). Text may not contain the NUL character.

Integers are written without a fraction or exponent (`2`, not `2.0`). Lists are paged: \
pass the answer's `next_cursor` as `cursor` for the next page; it is null on the last one.
"""
TAGS = [
    {"name": "Instances"}, {"name": "Nodes"}, {"name": "Tasks"}, {"name": "Batches"},
    {"name": "Excel", "description": "Templates, imports and error workbooks."},
    {"name": "Documentation"},
]
SECURITY_SCHEME = "bearerAuth"
_ARGUMENT = re.compile(r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?"
                       r"(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")


def _path_and_parameters(rule_text):
    """Werkzeug's ``/tasks/<int:task_id>`` as ``/tasks/{task_id}`` and its path parameters."""
    parameters = []
    for match in _ARGUMENT.finditer(rule_text):
        schema = schemas.ID if match["converter"] == "int" else {"type": "string"}
        parameters.append({"name": match["name"], "in": "path", "required": True,
                           "schema": schema})
    return _ARGUMENT.sub(lambda m: "{" + m["name"] + "}", rule_text), parameters


def _query_parameter(param):
    return {"name": param.name, "in": "query", "required": param.required,
            "description": param.description, "schema": param.schema,
            # An empty value is the same as none (``?node_id=&status=pending``).
            "allowEmptyValue": not param.required}


def _reply(reply):
    answer = {"description": reply.description}
    if reply.schema is not None:
        answer["content"] = {reply.media_type: {"schema": reply.schema}}
    return answer


def _operation_object(endpoint, op, path_parameters):
    result = {"operationId": endpoint.partition(".")[2], "summary": op.summary,
              "tags": [op.tag],
              "responses": {str(status): _reply(reply)
                            for status, reply in sorted(op.replies.items())}}
    if op.description:
        result["description"] = op.description
    parameters = path_parameters + [_query_parameter(p) for p in op.query]
    if parameters:
        result["parameters"] = parameters
    if op.body is not None:
        result["requestBody"] = {"required": op.body_required,
                                 "content": {"application/json": {"schema": op.body}}}
    if op.form is not None:
        result["requestBody"] = {"required": True,
                                 "content": {"multipart/form-data": {"schema": op.form}}}
    if op.public:
        result["security"] = []
    return result


def build_document(app):
    """The document for ``app``'s routes under this blueprint."""
    paths = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.partition(".")[0] != bp.name:
            continue
        op = operation_of(app.view_functions[rule.endpoint])
        if not op.listed:
            continue
        path, path_parameters = _path_and_parameters(rule.rule[len(bp.url_prefix):])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation_object(
                rule.endpoint, op, path_parameters)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": bp.url_prefix}],
        "security": [{SECURITY_SCHEME: []}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas.COMPONENTS,
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer",
                "description": "An API token: `flask --app app user token NAME`."}},
        },
    }


def document(app):
    """Built once per application: routes do not change while it runs."""
    if "api_openapi" not in app.extensions:
        app.extensions["api_openapi"] = build_document(app)
    return app.extensions["api_openapi"]


@bp.get("/openapi.json")
@operation("This document", tag="Documentation", public=True, errors=(),
           description="The OpenAPI 3.1 document of every operation under /api/v1. "
                       "Public: it describes the API, no data.",
           replies={200: Reply("OpenAPI 3.1 document.", {"type": "object",
                                                         "required": ["openapi", "paths"]})})
def openapi_document():
    return document(current_app)


# --- the viewer (Swagger UI, vendored under static/vendor/swagger-ui) ---------------------
# It runs under the portal's own CSP (scripts and styles from 'self' only): its
# start-up code is a file below, not an inline script, and it styles through
# the DOM, which the policy allows. Calls made with "Try it out" go to this
# origin, with the token the reader enters under "Authorize".

@bp.get("/docs")
@operation("The API documentation page", tag="Documentation", public=True, listed=False,
           errors=(), replies={200: Reply("An HTML page.", media_type="text/html")})
def docs_page():
    return render_template("api/docs.html")


@bp.get("/docs/swagger-initializer.js")
@operation("The documentation page's script", tag="Documentation", public=True,
           listed=False, errors=(), replies={200: Reply("JavaScript.",
                                                        media_type="text/javascript")})
def docs_script():
    response = current_app.make_response(render_template("api/swagger-initializer.js"))
    response.mimetype = "text/javascript"
    return response
