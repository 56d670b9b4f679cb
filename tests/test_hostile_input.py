"""Hostile input from an ordinary account: numbers that would cost minutes, ids
beyond any column, other people's tasks named in a batch, oversized selections.
Each answer is a clear 4xx (or an "unavailable" item) and nothing leaks."""
import io
import re

import pytest

from support import GOOD_FORM, csrf_token, login
from excel_support import node_by_key, single_file, upload
from portal.batches import creation, runner
from portal.excel import cells
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Task
from portal.workflow import engine
from portal.workflow.forms import validate_form

HUGE = "1e1000000"        # Decimal takes it; int() of it takes minutes
LARGE = "1e5000"          # the same defect, cheap enough to show on the old code


@pytest.fixture
def tasks(factory, users):
    return factory.tasks(4, starter=users["admin"])


def _count(model):
    return db.session.execute(db.select(db.func.count()).select_from(model)).scalar()


# --- numbers ---------------------------------------------------------------------

NUMBER = [{"key": "n", "label": "N", "type": "number"}]
TABLE = [{"key": "lines", "label": "Lines", "type": "table",
          "columns": [{"key": "cost", "label": "Cost", "type": "number"}]}]


@pytest.mark.parametrize("value", [HUGE, "-" + HUGE, LARGE, "9" * 41, 10**400, 1e308,
                                   "1000000000000000"])
def test_numbers_beyond_the_documented_range_are_a_field_error(app, value):
    with app.test_request_context():
        cleaned, errors = validate_form(NUMBER, {"n": value})
    assert cleaned == {} and "15 digits" in errors["n"]


@pytest.mark.parametrize("value, expected", [("999999999999999", 999999999999999),
                                             ("-12.5", -12.5), ("1,234.5", 1234.5),
                                             (0.1 + 0.2, 0.3), ("1e-1000000", 0),
                                             ("0E+1000000", 0), ("1E+14", 10**14)])
def test_numbers_inside_the_range_keep_working(app, value, expected):
    with app.test_request_context():
        assert validate_form(NUMBER, {"n": value}) == ({"n": expected}, {})


def test_table_columns_are_held_to_the_same_range(app):
    with app.test_request_context():
        _cleaned, errors = validate_form(TABLE, {"lines": [{"cost": HUGE}, {"cost": "3"}]})
    assert "Row 1" in errors["lines"] and "15 digits" in errors["lines"]


def test_a_single_approval_with_a_huge_number_is_a_422(api, tasks):
    response = api("alice").post(f"/tasks/{tasks[0].id}/approve", json={
        "action": "approve", "form": {**GOOD_FORM, "amount": LARGE}})
    assert response.status_code == 422
    assert "15 digits" in response.get_json()["errors"]["amount"]
    assert db.session.get(Task, tasks[0].id).status == "pending"


def test_a_batch_form_with_a_huge_number_is_a_422_and_creates_nothing(api, tasks):
    response = api("alice").post("/batches", json={
        "node_id": tasks[0].node_id, "task_ids": [t.id for t in tasks], "action": "approve",
        "form": {**GOOD_FORM, "amount": HUGE}})
    assert response.status_code == 422
    assert "amount" in response.get_json()["errors"]
    assert _count(Batch) == 0


def test_an_import_row_with_a_huge_number_fails_that_row_only(client, factory, users, tasks):
    node = node_by_key()
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    template = build_template(users["alice"], node, "single", "en")
    data = single_file(template, [(tasks[0].id, {"C": "approve", "E": HUGE, "F": "Meals"}),
                                  (tasks[1].id, {"C": "approve", "E": "12", "F": "Meals"})])
    preview = upload(client, headers, node, data, dry_run=True).get_json()["preview"]
    assert preview["valid"] == 1
    assert [p["task_id"] for p in preview["invalid"]] == [tasks[0].id]
    assert "15 digits" in preview["invalid"][0]["errors"]["amount"]


@pytest.mark.parametrize("text", ["9" * 5000, "²", "1e300", "inf", "nan", "12.5"])
def test_cell_values_that_are_no_task_id(text):
    assert cells.whole_number(text) is None


def test_an_import_whose_task_id_cell_is_5000_digits_reports_that_row(client, factory, users,
                                                                         tasks):
    node = node_by_key()
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    template = build_template(users["alice"], node, "single", "en")
    data = single_file(template, [("9" * 5000, {"C": "approve"}), ("²", {"C": "approve"}),
                                  (tasks[0].id, {"C": "reject"})])
    response = upload(client, headers, node, data, dry_run=True)
    assert response.status_code == 200
    preview = response.get_json()["preview"]
    assert preview["valid"] == 1
    assert [(p["row"], p["task_id"]) for p in preview["invalid"]] == [(2, None), (3, None)]


# --- other people's tasks ----------------------------------------------------------

def _mixed_batch(users, tasks):
    """carol names alice's pending task, alice's done task and a missing id."""
    engine.decide(tasks[1].id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    ids = [tasks[0].id, tasks[1].id, 999999]
    return creation.create_batch(users["carol"], tasks[0].node, task_ids=ids, action="approve",
                                 form=GOOD_FORM)


def test_tasks_the_creator_may_not_open_are_one_reason_whatever_their_state(users, tasks):
    batch = _mixed_batch(users, tasks)
    db.session.commit()
    items = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)
                               .order_by(BatchItem.id)).scalars().all()
    assert {(i.status, i.error_kind, i.error) for i in items} == {
        ("ignored", "unavailable", "The task is not available to you.")}
    assert db.session.get(Task, tasks[0].id).lock_holder_id is None


def test_the_batch_and_item_pages_show_no_title_of_such_tasks(client, users, tasks):
    batch = _mixed_batch(users, tasks)
    db.session.commit()
    login(client, "carol")
    html = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    assert "Claim 0" not in html and "Claim 1" not in html
    assert "The task is not available to you." in html
    item = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)
                              .limit(1)).scalar_one()
    html = client.get(f"/batches/{batch.id}/items/{item.id}").get_data(as_text=True)
    assert "Claim 0" not in html


def test_the_items_api_and_the_preview_say_only_unavailable(api, users, tasks):
    engine.decide(tasks[1].id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    ids = [tasks[0].id, tasks[1].id, 999999]
    preview = creation.preview(users["carol"], tasks[0].node, ids)
    assert preview == {"total": 3, "eligible": 0, "reasons": {"unavailable": 3}}
    response = api("carol").post("/batches", json={
        "node_id": tasks[0].node_id, "task_ids": ids, "action": "approve", "form": GOOD_FORM})
    batch_id = response.get_json()["batch"]["id"]
    items = api("carol").get(f"/batches/{batch_id}/items").get_json()["items"]
    assert {(i["error_kind"], i["error"]) for i in items} == {
        ("unavailable", "The task is not available to you.")}


def test_people_who_may_open_a_task_still_hear_why(users, tasks):
    """The done task's approver and an admin are told it is done."""
    engine.decide(tasks[1].id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    node = tasks[0].node
    assert creation.preview(users["alice"], node, [tasks[1].id])["reasons"] == {"done": 1}
    assert creation.preview(users["admin"], node, [tasks[1].id, tasks[2].id])["reasons"] == {
        "done": 1, "not_yours": 1}


def test_import_rows_of_other_peoples_tasks_are_not_parsed(client, factory, users, tasks):
    node = node_by_key()
    headers = {"Authorization": f"Bearer {factory.token(users['carol'])}"}
    template = build_template(users["alice"], node, "single", "en")
    data = single_file(template, [(tasks[0].id, {"C": "approve", "E": "abc", "F": "Nope"}),
                                  (999999, {"C": "approve", "E": HUGE})])
    preview = upload(client, headers, node, data, dry_run=True).get_json()["preview"]
    assert [(p["reason"], p["errors"]) for p in preview["invalid"]] == [
        ("unavailable", {"task_id": "The task is not available to you."})] * 2
    response = upload(client, headers, node, data)
    assert response.status_code == 202
    items = db.session.execute(db.select(BatchItem)).scalars().all()
    assert {(i.status, i.error_kind) for i in items} == {("ignored", "unavailable")}
    assert all(i.decision is None for i in items)


def test_items_of_older_batches_that_named_hidden_tasks_show_no_title(client, users, tasks):
    batch = creation.create_batch(users["carol"], tasks[0].node, task_ids=[tasks[0].id],
                                  action="approve", form=GOOD_FORM)
    db.session.flush()
    db.session.execute(db.update(BatchItem).where(BatchItem.batch_id == batch.id)
                       .values(error_kind="not_yours"))
    db.session.commit()
    login(client, "carol")
    assert "Claim 0" not in client.get(f"/batches/{batch.id}").get_data(as_text=True)


def test_a_task_reassigned_before_its_item_runs_is_unavailable(users, tasks):
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[tasks[0].id],
                                  action="approve", form=GOOD_FORM)
    db.session.commit()
    db.session.execute(db.update(Task).where(Task.id == tasks[0].id)
                       .values(assignee_user_id=users["bob"].id))
    db.session.commit()
    runner.run_inline(batch.id)
    item = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)).scalar_one()
    assert (item.status, item.error_kind) == ("ignored", "unavailable")


# --- one cap for every way of making a batch ------------------------------------------

@pytest.fixture
def small_cap(app):
    app.config["MAX_IMPORT_ROWS"] = 3
    yield 3
    app.config["MAX_IMPORT_ROWS"] = 50000


def test_the_batch_page_refuses_more_tasks_than_a_batch_may_hold(client, users, tasks, small_cap):
    login(client, "alice")
    node_id = tasks[0].node_id
    ids = [str(t.id) for t in tasks]
    url = f"/batches/new?node_id={node_id}&task_ids={tasks[0].id}"
    response = client.post("/batches/new", data={
        "csrf_token": csrf_token(client, url), "node_id": str(node_id), "task_ids": ids,
        "action": "approve", **GOOD_FORM})
    assert response.status_code in (400, 422)
    assert "At most 3 tasks per batch." in response.get_data(as_text=True)
    assert _count(Batch) == 0 and _count(BatchItem) == 0
    preview = client.get(f"/batches/new?node_id={node_id}&" + "&".join(
        f"task_ids={i}" for i in ids))
    assert preview.status_code == 400
    assert "At most 3 tasks per batch." in preview.get_data(as_text=True)


def test_all_matching_on_the_page_is_held_to_the_cap(client, users, tasks, small_cap):
    login(client, "alice")
    node_id = tasks[0].node_id
    url = f"/batches/new?node_id={node_id}&all=1"
    response = client.post("/batches/new", data={
        "csrf_token": csrf_token(client, url), "node_id": str(node_id), "all": "1",
        "action": "approve", **GOOD_FORM})
    assert response.status_code == 400   # refused with the selection, as explicit ids are
    assert "At most 3 tasks per batch." in response.get_data(as_text=True)
    assert _count(Batch) == 0


def test_the_api_is_held_to_the_same_cap(api, tasks, small_cap):
    response = api("alice").post("/batches", json={
        "node_id": tasks[0].node_id, "task_ids": [t.id for t in tasks], "action": "approve",
        "form": GOOD_FORM})
    assert response.status_code == 422
    assert "At most 3" in response.get_json()["errors"]["task_ids"]
    assert _count(Batch) == 0


# --- ids beyond any column --------------------------------------------------------------

BEYOND_64_BITS = "99999999999999999999999"


@pytest.mark.parametrize("query", ["after", "before", "node_id", "creator_id"])
def test_page_query_ids_beyond_the_column_are_a_400(client, users, query):
    login(client, "alice")
    response = client.get(f"/batches?{query}={BEYOND_64_BITS}")
    assert response.status_code == 400
    assert f"{query} must be a whole number" in response.get_data(as_text=True)
    assert client.get(f"/batches?{query}=%C2%B2").status_code == 400   # "²"


@pytest.mark.parametrize("path", ["/batches/{n}", "/batches/{n}/progress", "/tasks/{n}",
                                  "/instances/{n}", "/imports/{n}", "/nodes/{n}/import"])
def test_path_ids_beyond_the_column_are_a_404(client, users, path):
    login(client, "alice")
    assert client.get(path.format(n=BEYOND_64_BITS)).status_code == 404
    assert client.get(path.format(n=2**31)).status_code == 404


def test_api_path_ids_beyond_the_column_are_a_json_404(api, users):
    response = api("alice").get(f"/batches/{BEYOND_64_BITS}")
    assert response.status_code == 404 and "error" in response.get_json()


def test_retry_with_item_ids_that_are_no_ids_is_a_400(client, users, tasks):
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[tasks[0].id],
                                  action="approve", form=GOOD_FORM)
    db.session.commit()
    login(client, "sam")
    for bad in ("²", BEYOND_64_BITS, "9" * 5000):
        response = client.post(f"/batches/{batch.id}/retry", data={
            "csrf_token": csrf_token(client, f"/batches/{batch.id}"), "item_id": bad})
        assert response.status_code == 400


# --- file names --------------------------------------------------------------------------

def test_download_names_are_built_on_the_server(client, users, tasks):
    login(client, "alice")
    node_id = tasks[0].node_id
    response = client.get(f"/nodes/{node_id}/template?mode=single&filename=../../x%0d%0a.xlsx")
    disposition = response.headers["Content-Disposition"]
    assert response.status_code == 200
    assert re.search(r"filename=expense-manager-single-\d{8}\.xlsx", disposition)
    assert ".." not in disposition and "\r" not in disposition and "\n" not in disposition


def test_an_uploaded_file_name_is_shown_escaped_and_never_sent_back_as_a_header(client, users,
                                                                              tasks):
    login(client, "alice")
    node = node_by_key()
    data = single_file(build_template(users["alice"], node, "single", "en"),
                       [(tasks[0].id, {"C": "reject"})])
    name = '<script>x</script>"../../a.xlsx'
    url = f"/nodes/{node.id}/import"
    response = client.post(url, data={"csrf_token": csrf_token(client, url), "mode": "single",
                                      "file": (io.BytesIO(data), name)},
                           content_type="multipart/form-data", follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html


def test_retrying_more_item_ids_than_one_request_takes_is_refused_on_the_page_too(
        client, users, tasks, monkeypatch):
    from portal.batches import control
    monkeypatch.setattr(control, "MAX_RETRY_IDS", 2)
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[tasks[0].id],
                                  action="approve", form=GOOD_FORM)
    db.session.commit()
    login(client, "sam")
    response = client.post(f"/batches/{batch.id}/retry", data={
        "csrf_token": csrf_token(client, f"/batches/{batch.id}"), "item_id": ["1", "2", "3"]})
    assert response.status_code == 422
    assert "At most 2 item ids" in response.get_data(as_text=True)


def test_a_nul_character_in_a_page_form_is_a_400_and_changes_nothing(client, users, tasks):
    login(client, "alice")
    url = f"/tasks/{tasks[0].id}"
    response = client.post(f"{url}/decide", data={
        "csrf_token": csrf_token(client, url), "action": "reject", "comment": "a\x00b"})
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)
    assert db.session.get(Task, tasks[0].id).status == "pending"
    assert client.get("/?q=a%00b").status_code == 400


NUL_NAME = "claims\x00.xlsx"


def test_a_nul_character_in_an_uploaded_file_name_is_a_400_and_keeps_nothing(client, users, tasks):
    from portal.models.uploads import PendingUpload
    login(client, "alice")
    node = node_by_key()
    data = single_file(build_template(users["alice"], node, "single", "en"),
                       [(tasks[0].id, {"C": "reject"})])
    url = f"/nodes/{node.id}/import"
    response = client.post(url, data={"csrf_token": csrf_token(client, url), "mode": "single",
                                      "file": (io.BytesIO(data), NUL_NAME)},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)
    assert _count(PendingUpload) == 0 and _count(Batch) == 0


def test_a_nul_character_in_a_process_file_name_is_a_400_and_loads_nothing(client, users):
    from portal.models import ProcessDefinition
    login(client, "admin")
    before = _count(ProcessDefinition)
    response = client.post("/admin/processes/upload", data={"csrf_token": csrf_token(client, "/admin/processes"),
                                      "file": (io.BytesIO(b'{"key": "x", "name": "X", "nodes": []}'),
                                               "x\x00.json")},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)
    assert _count(ProcessDefinition) == before


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_nul_character_in_an_api_upload_file_name_is_a_400_naming_the_file(client, factory, users, tasks,
                                                                            dry_run):
    node = node_by_key()
    data = single_file(build_template(users["alice"], node, "single", "en"),
                       [(tasks[0].id, {"C": "reject"})])
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    form = {"file": (io.BytesIO(data), NUL_NAME), "node_id": str(node.id), "mode": "single"}
    if dry_run:
        form["dry_run"] = "1"
    response = client.post("/api/v1/imports", headers=headers, content_type="multipart/form-data", data=form)
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert "file" in body["errors"] and "NUL" in body["errors"]["file"]
    assert _count(Batch) == 0 and _count(BatchItem) == 0
