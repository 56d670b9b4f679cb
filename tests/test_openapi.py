"""/api/v1/openapi.json and /api/v1/docs, and the checks every API request passes
before its view: hostile bodies, query strings and multipart fields get the
contract's 4xx and change nothing."""
import io
import re

import pytest
from openapi_spec_validator import validate

from excel_support import import_env, single_file
from portal.api import schemas
from portal.api.operations import Validator, _scalar_check, check_described, operation_of
from portal.api.validation import MAX_DEPTH
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.infra.security import CSP
from portal.models import Batch, BatchItem, History, Instance

# Every operation of CONTRACT section 4 that the API serves.
CONTRACT_OPERATIONS = {
    ("POST", "/instances"), ("GET", "/openapi.json"), ("GET", "/nodes"), ("GET", "/tasks"),
    ("POST", "/tasks/{task_id}/approve"), ("POST", "/tasks/{task_id}/recall"),
    ("POST", "/batches"), ("POST", "/imports"), ("GET", "/batches"),
    ("GET", "/batches/{batch_id}"), ("GET", "/batches/{batch_id}/items"),
    ("POST", "/batches/{batch_id}/retry"), ("POST", "/batches/{batch_id}/pause"),
    ("POST", "/batches/{batch_id}/resume"), ("POST", "/batches/{batch_id}/cancel"),
    ("GET", "/batches/{batch_id}/error-file"), ("GET", "/nodes/{node_id}/template"),
    ("GET", "/instances/{instance_id}"),
}


@pytest.fixture
def users(factory):
    return factory.standard()


def _document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _api_rules(app):
    """(rule, operation, OpenAPI path, methods) of every route of the api blueprint."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.partition(".")[0] != "api":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        yield rule, operation_of(app.view_functions[rule.endpoint]), path, sorted(
            rule.methods - {"HEAD", "OPTIONS"})


def _assert_error_shape(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"].strip()
    assert all(isinstance(v, str) for v in body.get("errors", {}).values())
    return body


def _counts():
    return tuple(db.session.execute(db.select(db.func.count(model.id))).scalar()
                 for model in (Instance, Batch, BatchItem, History))


# --- the document ---------------------------------------------------------------------

def test_the_document_is_public_and_valid_openapi_3_1(client):
    response = client.get("/api/v1/openapi.json")  # no token
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises when the document is not valid OpenAPI 3.1
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/openapi.json"]["get"]["security"] == []


def test_every_api_route_is_described(app, client):
    """A new route without a description fails here (and the app refuses to start)."""
    document = _document(client)
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item}
    routes, unlisted = set(), set()
    for rule, op, path, methods in _api_rules(app):
        assert op is not None, rule.endpoint
        if op.listed:
            routes |= {(method, path) for method in methods}
        else:
            unlisted.add(rule.endpoint)
    assert routes == documented
    assert CONTRACT_OPERATIONS <= documented
    # only the viewer's own page and script stay out of the document
    assert unlisted == {"api.docs_page", "api.docs_script"}


def test_each_operation_documents_its_errors_and_parameters(client):
    for path, item in _document(client)["paths"].items():
        for method, operation in item.items():
            replies = operation["responses"]
            assert any(code.startswith("2") for code in replies), (method, path)
            errors = {code for code in replies if code[0] in "45"}
            for code in errors:
                schema = replies[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}
            if operation.get("security") != []:
                assert "401" in errors, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= errors, (method, path)
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), (method, path)


def test_the_document_publishes_the_schemas_the_checks_use(app, client):
    """The request schemas in the document are the ones validation.py checks with."""
    document = _document(client)
    for _rule, op, path, methods in _api_rules(app):
        if not op.listed:
            continue
        for method in methods:
            published = document["paths"][path][method.lower()]
            if op.body is not None:
                assert published["requestBody"]["content"]["application/json"]["schema"] == \
                    op.body
                assert op.body_validator.schema is op.body
            if op.form is not None:
                assert published["requestBody"]["content"]["multipart/form-data"]["schema"] \
                    == op.form
            query = {p["name"]: p["schema"] for p in published.get("parameters", [])
                     if p["in"] == "query"}
            assert query == {p.name: p.schema for p in op.query}
            for param in op.query:
                assert op.query_validators[param.name].schema is param.schema


def test_a_view_without_a_description_stops_the_app():
    from types import SimpleNamespace
    state = SimpleNamespace(app=SimpleNamespace(view_functions={"api.new": lambda: {}}),
                            blueprint=SimpleNamespace(name="api"))
    with pytest.raises(RuntimeError, match="api.new"):
        check_described(state)


# --- the page for people ------------------------------------------------------------------

def test_the_docs_page_needs_no_token_and_keeps_the_portal_policy(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert 'data-spec-url="/api/v1/openapi.json"' in html
    assert "<script>" not in html  # no inline code: the strict policy holds
    assert page.headers["Content-Security-Policy"] == CSP
    script = client.get("/api/v1/docs/swagger-initializer.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert "SwaggerUIBundle" in script.get_data(as_text=True)
    assert client.get("/static/vendor/swagger-ui/swagger-ui.css").status_code == 200


# --- hostile JSON bodies ------------------------------------------------------------------

def _json_operations(app, factory, users):
    """(method, url) of every operation with a JSON body, naming real rows."""
    task = factory.tasks(1, starter=users["admin"])[0]
    batch = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    urls = []
    for _rule, op, path, methods in _api_rules(app):
        if op.body is not None:
            url = path.replace("{task_id}", str(task.id)).replace("{batch_id}", str(batch.id))
            urls += [(method, "/api/v1" + url) for method in methods]
    assert len(urls) == 4  # instances, approve, batches, retry
    return urls


@pytest.mark.parametrize("body", ["[" * 100_000, '{"a":' * 100_000,
                                  '{"form": ' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
                                  + "}"])
def test_deeply_nested_bodies_are_400_for_every_json_operation(app, client, factory, users,
                                                               body):
    """Python's JSON parser raises RecursionError on 100,000 "[" (it was a 500)."""
    token = factory.token(users["sam"])
    for method, url in _json_operations(app, factory, users):
        before = _counts()
        response = client.open(url, method=method, data=body, content_type="application/json",
                               headers={"Authorization": f"Bearer {token}"})
        assert "nested" in _assert_error_shape(response, 400)["error"], url
        assert _counts() == before


def test_nesting_is_allowed_up_to_the_limit(api):
    def nested(levels):
        value = "deep"
        for _ in range(levels):
            value = {"next": value}
        return value
    # the body is level 1 and "data" the first of the nested objects, at level 2:
    # MAX_DEPTH - 1 of them reach level MAX_DEPTH exactly
    ok = api("carol").post("/instances", json={"process": "expense", "title": "Deep",
                                               "data": nested(MAX_DEPTH - 1)})
    assert ok.status_code == 201, ok.get_data(as_text=True)
    too_deep = api("carol").post("/instances", json={"process": "expense", "title": "Deeper",
                                                     "data": nested(MAX_DEPTH)})
    _assert_error_shape(too_deep, 400)
    assert db.session.execute(db.select(db.func.count(Instance.id))).scalar() == 1


@pytest.mark.parametrize("body, field", [
    ({"process": "expense", "title": "Taxi\x00"}, "title"),
    ({"process": "expense", "title": "Taxi", "data": {"note": ["ok", "a\x00b"]}}, "data.note"),
    ({"process": "expense", "title": "Taxi", "data": {"ke\x00y": 1}}, "data"),
])
def test_text_with_nul_is_refused_before_the_database_sees_it(api, body, field):
    """PostgreSQL refuses NUL in text (a 500); SQLite stored it."""
    response = api("carol").post("/instances", json=body)
    assert field in _assert_error_shape(response, 422)["errors"]
    assert _counts()[0] == 0


def test_unpaired_surrogates_are_refused(api):
    response = api("carol").post("/instances", data='{"process": "expense", "title": "\\ud800"}',
                                 content_type="application/json")
    assert "title" in _assert_error_shape(response, 422)["errors"]
    assert _counts()[0] == 0


def test_body_faults_are_422_naming_every_field(api, factory, users):
    task = factory.tasks(1, starter=users["admin"])[0]
    response = api("alice").post("/batches", json={
        "node_id": 1.0, "task_ids": [task.id, "x"], "action": "maybe", "comment": 5,
        "filter": {"title": "C"}, "concurrency": 0, "colour": "red"})
    body = _assert_error_shape(response, 422)
    assert set(body["errors"]) == {"node_id", "task_ids", "action", "comment", "filter.title",
                                   "concurrency", "colour"}
    assert body["errors"]["colour"] == "Unknown field."
    assert body["errors"]["task_ids"] == "Task ids must be whole numbers."
    assert _counts()[1] == 0


def test_null_is_the_same_as_leaving_an_optional_field_out(api, factory, users):
    task = factory.tasks(1, starter=users["admin"])[0]
    response = api("alice").post(f"/tasks/{task.id}/approve",
                                 json={"action": "reject", "comment": None, "form": None})
    assert response.status_code == 200


# --- hostile query strings ----------------------------------------------------------------

HUGE = ["18446744073709551616", "99999999999999999999999999", "9" * 5000, "-" + "9" * 30]
NOT_NUMBERS = ["1_0", " 7", "7 ", "\u0663", "+5", "0x10", "1e3", "%00"]
QUERIES = ["/tasks?cursor={}", "/tasks?limit={}", "/tasks?node_id={}", "/tasks?status={}",
           "/batches?cursor={}", "/batches?limit={}", "/batches?status={}",
           "/batches/BATCH/items?cursor={}", "/batches/BATCH/items?limit={}",
           "/batches/BATCH/items?status={}", "/nodes/NODE/template?mode={}"]


@pytest.mark.parametrize("path, value", [(path, value) for path in QUERIES
                                         for value in HUGE + NOT_NUMBERS]
                         + [("/nodes?process={}", "%00"), ("/nodes?process={}", "a%00")])
def test_query_values_that_are_not_what_the_document_says_are_400(api, factory, users, path,
                                                                  value):
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    url = path.replace("BATCH", str(batch.id)).replace("NODE", str(tasks[0].node_id))
    response = api("alice").get(url.format(value))
    _assert_error_shape(response, 400)


def test_an_empty_query_value_is_the_same_as_none(api, factory, users):
    factory.tasks(2, starter=users["admin"])
    response = api("alice").get("/tasks?node_id=&status=&limit=&cursor=")
    assert response.status_code == 200 and len(response.get_json()["tasks"]) == 2


# --- hostile multipart fields -------------------------------------------------------------

@pytest.fixture
def upload_env(factory):
    users, tasks, headers, node = import_env(factory)
    template = build_template(users["alice"], node, "single", "en")
    good = single_file(template, [(tasks[0].id, {"C": "approve", "E": 12, "F": "Travel"})])
    return headers, node, good


@pytest.mark.parametrize("fields, named", [
    ({"node_id": "99999999999999999999"}, "node_id"),
    ({"node_id": "2147483648"}, "node_id"),
    ({"node_id": "\u0663"}, "node_id"),
    ({"node_id": " 3"}, "node_id"),
    ({"mode": "SINGLE"}, "mode"),
    ({"dry_run": "maybe"}, "dry_run"),
    ({"dry_run": ""}, "dry_run"),
    ({"concurrency": "0"}, "concurrency"),
    ({"concurrency": "51"}, "concurrency"),
    ({"concurrency": "1_0"}, "concurrency"),
    ({"concurrency": "99999999999999999999999"}, "concurrency"),
    ({"concurrency": "2.5"}, "concurrency"),
    ({"colour": "red"}, "colour"),
    ({"mode": "single\x00"}, "mode"),
])
def test_bad_import_fields_are_400_and_create_nothing(client, upload_env, fields, named):
    headers, node, good = upload_env
    form = {"file": (io.BytesIO(good), "f.xlsx"), "node_id": str(node.id), "mode": "single"}
    form.update(fields)
    before = _counts()
    response = client.post("/api/v1/imports", headers=headers,
                           content_type="multipart/form-data", data=form)
    body = _assert_error_shape(response, 400)
    assert named in body["errors"] and named in body["error"]
    assert _counts() == before


@pytest.mark.parametrize("dry_run, status", [("1", 200), ("true", 200), ("yes", 200),
                                             ("0", 202), ("false", 202), ("no", 202)])
def test_import_flags_take_the_documented_values(client, upload_env, dry_run, status):
    headers, node, good = upload_env
    response = client.post("/api/v1/imports", headers=headers,
                           content_type="multipart/form-data",
                           data={"file": (io.BytesIO(good), "f.xlsx"), "node_id": str(node.id),
                                 "mode": "single", "dry_run": dry_run, "concurrency": "2"})
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 202:
        assert response.get_json()["batch"]["concurrency"] == 2


@pytest.mark.parametrize("schema", [schemas.TASK_ID, schemas.ID])
def test_the_fast_list_check_agrees_with_json_schema(schema):
    """Long id lists skip the general validator when a plain check passes them all."""
    from jsonschema import Draft202012Validator
    fits = _scalar_check(schema)
    general = Validator(schema)
    values = [0, 1, -1, 7, schemas.MAX_ID, schemas.MAX_ID + 1, -schemas.MAX_ID,
              -schemas.MAX_ID - 1, 2**70, True, False, None, 1.0, 1.5, "1", " 12 ", "-3",
              "1_0", "\u0663", "", "x", "12\n", "9" * 19, "9" * 20, [1], {"a": 1}]
    for value in values:
        assert fits(value) == general.is_valid(value), value
    # the standard validator differs only where the API is stricter: 1.0 is no integer
    standard = Draft202012Validator(schema)
    assert [v for v in values if standard.is_valid(v) != general.is_valid(v)] == [1.0]
