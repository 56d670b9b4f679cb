"""A batch keeps each task's own values: the shared form sets only the fields it holds.

Two claims hold amounts of their own (10 and 20): a batch that does not set the
amount leaves each its own, one that sets it replaces both (and the page says
how many it replaces beforehand), and a claim lacking a required value fails with
a field error that "Correct and retry" and the error workbook work with. Templates
are prefilled with each task's values, so a file uploaded as downloaded changes
nothing but what the user typed.
"""
import io
import re

import openpyxl
import pytest

from support import csrf_token, login
from portal.batches import creation, runner
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.jobs.excel_jobs import build_error_file
from portal.models import Batch, BatchEvent, BatchItem, Task
from portal.workflow import engine
from excel_support import node_by_key, save, upload

CLAIMS = ({"amount": 10, "category": "Travel", "note": "taxi", "paid_on": "2026-01-05",
           "urgent": True},
          {"amount": 20, "category": "Meals"})


@pytest.fixture
def claims(users):
    """Two pending claims of alice at the manager node with values of their own."""
    return _claims(users, *CLAIMS)


def _claims(users, *variables):
    tasks = [engine.start_instance("expense", f"Claim {number}", dict(data), users["admin"]).tasks[0]
             for number, data in enumerate(variables, start=1)]
    db.session.commit()
    return tasks


def _task(task_id):
    return db.session.get(Task, task_id, populate_existing=True)


def _items(batch_id):
    return {i.task_id: i for i in db.session.execute(
        db.select(BatchItem).where(BatchItem.batch_id == batch_id)).scalars()}


def _headers(factory, users):
    return {"Authorization": f"Bearer {factory.token(users['alice'])}"}


# --- the engine: what a batch item decides with ------------------------------------------

def test_an_item_keeps_the_fields_its_batch_does_not_set(users, claims):
    batch = creation.create_batch(users["alice"], claims[0].node, task_ids=[t.id for t in claims],
                                  action="approve", form={"note": "checked"})
    db.session.commit()
    runner.run_inline(batch.id)
    first, second = _task(claims[0].id), _task(claims[1].id)
    assert (first.status, second.status) == ("done", "done")
    assert (first.form["amount"], first.form["category"]) == (10, "Travel")
    assert (second.form["amount"], second.form["category"]) == (20, "Meals")
    assert first.form["note"] == second.form["note"] == "checked"
    assert first.instance.data["amount"] == 10 and second.instance.data["amount"] == 20
    assert first.instance.data["paid_on"] == "2026-01-05" and first.instance.data["urgent"] is True


def test_a_shared_form_without_a_required_field_is_accepted_and_checked_per_item(users):
    tasks = _claims(users, {"amount": 10}, {"category": "Meals"})
    # Blank values set nothing either: a script sending every key keeps the tasks' own values.
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[t.id for t in tasks],
                                  action="approve", form={"category": "Travel", "note": None,
                                                          "amount": ""})
    db.session.commit()
    assert batch.shared_form == {"category": "Travel"}
    runner.run_inline(batch.id)
    items = _items(batch.id)
    assert items[tasks[0].id].status == "success"
    assert _task(tasks[0].id).form == {"amount": 10, "category": "Travel"}
    lacking = items[tasks[1].id]
    assert (lacking.status, lacking.error_code) == ("failed", "validation")
    assert set(lacking.field_errors) == {"amount"}
    assert lacking.error == "Amount: This field is required"
    assert _task(tasks[1].id).status == "pending"


# --- the API ------------------------------------------------------------------------------

def test_api_batch_that_does_not_set_the_amount_keeps_each_claims_amount(api, claims):
    response = api("alice").post("/batches", json={
        "node_id": claims[0].node_id, "task_ids": [t.id for t in claims], "action": "approve",
        "comment": "fine", "form": {"urgent": False}})
    assert response.status_code == 202, response.get_data(as_text=True)
    runner.run_inline(response.get_json()["batch"]["id"])
    assert [_task(t.id).form["amount"] for t in claims] == [10, 20]
    assert [_task(t.id).form["urgent"] for t in claims] == [False, False]
    assert [_task(t.id).instance.data["category"] for t in claims] == ["Travel", "Meals"]


def test_api_batch_that_sets_the_amount_replaces_it_for_every_claim(api, claims):
    response = api("alice").post("/batches", json={
        "node_id": claims[0].node_id, "task_ids": [t.id for t in claims], "action": "approve",
        "form": {"amount": 120.5}})
    assert response.status_code == 202, response.get_data(as_text=True)
    batch_id = response.get_json()["batch"]["id"]
    runner.run_inline(batch_id)
    assert [_task(t.id).instance.data["amount"] for t in claims] == [120.5, 120.5]
    assert [_task(t.id).form["category"] for t in claims] == ["Travel", "Meals"]
    created = db.session.execute(db.select(BatchEvent).where(
        BatchEvent.batch_id == batch_id, BatchEvent.action == "created")).scalar_one()
    assert created.detail["set_fields"] == ["amount"]


def test_api_an_item_lacking_a_required_value_fails_with_a_field_error(api, users, claims):
    lacking = _claims(users, {"category": "Travel"})[0]
    ids = [t.id for t in claims] + [lacking.id]
    response = api("alice").post("/batches", json={"node_id": lacking.node_id, "task_ids": ids,
                                                   "action": "approve", "form": {}})
    assert response.status_code == 202, response.get_data(as_text=True)
    batch_id = response.get_json()["batch"]["id"]
    runner.run_inline(batch_id)
    body = api("alice").get(f"/batches/{batch_id}").get_json()["batch"]
    assert (body["success"], body["failed"]) == (2, 1)
    items = api("alice").get(f"/batches/{batch_id}/items?status=failed").get_json()["items"]
    assert [(i["task_id"], i["error_code"], i["error"]) for i in items] == [
        (lacking.id, "validation", "Amount: This field is required")]


def test_api_an_invalid_value_in_the_shared_form_is_still_a_422(api, claims):
    response = api("alice").post("/batches", json={
        "node_id": claims[0].node_id, "task_ids": [t.id for t in claims], "action": "approve",
        "form": {"amount": "lots"}})
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"amount"}      # the category is each claim's
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 0


# --- the page -------------------------------------------------------------------------------

def _new_url(tasks):
    return f"/batches/new?node_id={tasks[0].node_id}&" + "&".join(f"task_ids={t.id}" for t in tasks)


def _post(client, tasks, values):
    data = {"csrf_token": csrf_token(client, _new_url(tasks)), "node_id": str(tasks[0].node_id),
            "task_ids": [str(t.id) for t in tasks], "action": "approve", "comment": ""}
    data.update(values)
    return client.post("/batches/new", data=data)


def _set_all_box(html, key):
    match = re.search(rf'<input[^>]*id="set-all-{key}"[^>]*>', html)
    assert match, f"no set-for-all box for {key}"
    return match.group(0)


def _replaces(html, key):
    match = re.search(rf'data-set-all="{key}".*?data-replaces="(\d+)"', html, re.S)
    assert match, f"no replacement count for {key}"
    return int(match.group(1))


def test_page_offers_set_for_all_per_field_off_with_the_count_it_replaces(client, users, claims):
    login(client, "alice")
    html = client.get(_new_url(claims)).get_data(as_text=True)
    for key in ("amount", "category", "paid_on", "urgent", "note"):
        box = _set_all_box(html, key)
        assert 'name="set_all"' in box and f'value="{key}"' in box and "checked" not in box
    assert (_replaces(html, "amount"), _replaces(html, "category")) == (2, 2)
    assert (_replaces(html, "note"), _replaces(html, "paid_on")) == (1, 1)
    assert "each task keeps its own value" in html.lower()


def test_page_batch_that_leaves_the_amount_to_the_claims_keeps_both(client, users, claims):
    login(client, "alice")
    response = _post(client, claims, {"set_all": "note", "note": "ok"})
    assert response.status_code == 302, response.get_data(as_text=True)
    batch = db.session.execute(db.select(Batch)).scalar_one()
    assert batch.shared_form == {"note": "ok"}
    runner.run_inline(batch.id)
    assert [_task(t.id).form["amount"] for t in claims] == [10, 20]
    assert [_task(t.id).form["note"] for t in claims] == ["ok", "ok"]
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    events = page[page.index('id="events-table"'):]
    assert "Set for all: Note" in events


def test_page_batch_that_ticks_the_amount_replaces_both(client, users, claims):
    login(client, "alice")
    response = _post(client, claims, {"set_all": ["amount", "urgent"], "amount": "120.5"})
    assert response.status_code == 302, response.get_data(as_text=True)
    batch = db.session.execute(db.select(Batch)).scalar_one()
    assert batch.shared_form == {"amount": 120.5, "urgent": False}   # an unticked box: No
    runner.run_inline(batch.id)
    assert [_task(t.id).instance.data["amount"] for t in claims] == [120.5, 120.5]
    assert [_task(t.id).instance.data["urgent"] for t in claims] == [False, False]
    assert [_task(t.id).form["category"] for t in claims] == ["Travel", "Meals"]
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    assert "Set for all: Amount, Urgent" in page


def test_page_refuses_a_value_typed_without_its_box_and_a_ticked_box_left_empty(client, users,
                                                                                claims):
    login(client, "alice")
    response = _post(client, claims, {"amount": "120.5", "set_all": "category"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(r'data-error-for="amount">[^<]*Set the same value for all', html)
    assert re.search(r'data-error-for="category">', html)           # ticked, left empty
    assert 'value="120.5"' in html and "checked" in _set_all_box(html, "category")
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 0
    assert [_task(t.id).lock_batch_id for t in claims] == [None, None]


# --- templates and imports -------------------------------------------------------------------

def _single_rows(template):
    ws = openpyxl.load_workbook(io.BytesIO(template)).worksheets[0]
    return {row[0]: row for row in ws.iter_rows(min_row=2, values_only=True)}


def test_templates_are_prefilled_with_each_tasks_values(users, claims):
    node = node_by_key()
    rows = _single_rows(build_template(users["alice"], node, "single", "en"))
    first, second = rows[claims[0].id], rows[claims[1].id]
    assert first[2] is None                                  # the action is the user's to choose
    assert first[4:] == (10, "Travel", first[6], "yes", "taxi")
    assert first[6].date().isoformat() == "2026-01-05"
    assert second[4:] == (20, "Meals", None, None, None)
    assert _single_rows(build_template(users["alice"], node, "single", "zh_CN"))[
        claims[0].id][7] == "是"


def test_a_prefilled_template_with_only_the_actions_keeps_every_value(client, factory, users,
                                                                       claims):
    node = node_by_key()
    book = openpyxl.load_workbook(io.BytesIO(build_template(users["alice"], node, "single", "en")))
    ws = book.worksheets[0]
    for row in range(2, ws.max_row + 1):
        ws[f"C{row}"] = "approve"
    response = upload(client, _headers(factory, users), node, save(book))
    assert response.status_code == 202, response.get_data(as_text=True)
    runner.run_inline(response.get_json()["batch"]["id"])
    first, second = _task(claims[0].id), _task(claims[1].id)
    assert first.form == {"amount": 10, "category": "Travel", "note": "taxi",
                          "paid_on": "2026-01-05", "urgent": True}
    assert second.form == {"amount": 20, "category": "Meals"}
    assert first.instance.data["amount"] == 10 and second.instance.data["amount"] == 20


def test_an_emptied_cell_keeps_the_tasks_value_and_a_task_lacking_one_is_reported(
        client, factory, users, claims):
    lacking = _claims(users, {"category": "Travel"})[0]
    node = node_by_key()
    book = openpyxl.load_workbook(io.BytesIO(build_template(users["alice"], node, "single", "en")))
    ws = book.worksheets[0]
    rows = {ws[f"A{r}"].value: r for r in range(2, ws.max_row + 1)}
    first, second, third = rows[claims[0].id], rows[claims[1].id], rows[lacking.id]
    ws[f"C{first}"], ws[f"E{first}"], ws[f"I{first}"] = "approve", None, None   # emptied
    ws[f"C{second}"], ws[f"E{second}"] = "approve", 25                          # changed
    ws[f"C{third}"] = "approve"                                  # no amount of its own
    headers = _headers(factory, users)
    preview = upload(client, headers, node, save(book), dry_run=True).get_json()["preview"]
    assert preview["valid"] == 2
    assert [(p["task_id"], set(p["errors"])) for p in preview["invalid"]] == [
        (lacking.id, {"amount"})]
    response = upload(client, headers, node, save(book))
    assert response.status_code == 202, response.get_data(as_text=True)
    runner.run_inline(response.get_json()["batch"]["id"])
    assert _task(claims[0].id).instance.data["amount"] == 10      # an emptied required cell
    assert _task(claims[0].id).instance.data["note"] == "taxi"    # and an emptied optional one
    assert _task(claims[1].id).instance.data["amount"] == 25
    assert _task(lacking.id).status == "pending"


def test_a_prefilled_row_or_sheet_left_without_an_action_is_skipped(client, factory, users,
                                                                    claims):
    node = node_by_key()
    headers = _headers(factory, users)
    book = openpyxl.load_workbook(io.BytesIO(build_template(users["alice"], node, "single", "en")))
    book.worksheets[0]["C2"] = "approve"                   # the first claim; the second untouched
    preview = upload(client, headers, node, save(book), dry_run=True).get_json()["preview"]
    assert preview == {"valid": 1, "invalid": [], "skipped": 1}
    book = openpyxl.load_workbook(io.BytesIO(build_template(users["alice"], node, "per_instance",
                                                            "en")))
    book[str(claims[1].id)]["B3"] = "reject"
    preview = upload(client, headers, node, save(book), mode="per_instance",
                     dry_run=True).get_json()["preview"]
    assert preview == {"valid": 1, "invalid": [], "skipped": 1}


def test_per_instance_templates_round_trip_table_lines(client, factory, users):
    lines = [{"item": "Taxi", "cost": 12.5}, {"item": "Hotel"}]
    task = _claims(users, {"amount": 7, "category": "Travel", "lines": lines})[0]
    node = node_by_key()
    book = openpyxl.load_workbook(io.BytesIO(build_template(users["alice"], node, "per_instance",
                                                            "en")))
    ws = book[str(task.id)]
    assert (ws["B5"].value, ws["B6"].value) == (7, "Travel")
    assert [(ws[f"A{r}"].value, ws[f"B{r}"].value) for r in (13, 14)] == [("Taxi", 12.5),
                                                                          ("Hotel", None)]
    ws["B3"] = "approve"
    response = upload(client, _headers(factory, users), node, save(book), mode="per_instance")
    assert response.status_code == 202, response.get_data(as_text=True)
    runner.run_inline(response.get_json()["batch"]["id"])
    assert _task(task.id).form["lines"] == lines and _task(task.id).form["amount"] == 7


# --- correcting and the error workbook -------------------------------------------------------

def test_correct_and_retry_and_the_error_workbook_show_the_tasks_own_values(client, users):
    tasks = _claims(users, {"category": "Meals", "note": "hotel"})
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[tasks[0].id],
                                  action="approve", form={"paid_on": "2026-03-01"})
    db.session.commit()
    runner.run_inline(batch.id)
    item = _items(batch.id)[tasks[0].id]
    assert (item.status, item.error_code) == ("failed", "validation")

    build_error_file(batch.id)
    content = db.session.get(Batch, batch.id, populate_existing=True).error_file.content
    row = list(openpyxl.load_workbook(io.BytesIO(content)).worksheets[0].iter_rows(
        min_row=2, values_only=True))[0]
    assert (row[0], row[4], row[5], row[8]) == (tasks[0].id, None, "Meals", "hotel")
    assert row[6].date().isoformat() == "2026-03-01"

    login(client, "alice")
    page = client.get(f"/batches/{batch.id}/items/{item.id}/correct").get_data(as_text=True)
    assert re.search(r'<option[^>]*selected[^>]*value="Meals"|<option[^>]*value="Meals"[^>]*selected',
                     page)
    assert 'value="hotel"' in page and 'value="2026-03-01"' in page
