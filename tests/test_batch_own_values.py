"""A batch keeps each task's own values: the shared form sets only the fields it holds.

Two claims hold amounts of their own (10 and 20): a batch that does not set the
amount leaves each its own, one that sets it replaces both (and the page says
how many it replaces beforehand), and a claim lacking a required value fails with
a field error that "Correct and retry" and the error workbook work with. Templates
are prefilled with each task's values, so a file uploaded as downloaded changes
nothing but what the user typed.
"""
import re

import pytest

from support import csrf_token, login
from portal.batches import creation, runner
from portal.extensions import db
from portal.models import Batch, BatchEvent, BatchItem, Task
from portal.workflow import engine

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
