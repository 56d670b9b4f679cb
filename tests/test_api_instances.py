"""GET /api/v1/instances/<id>: who may read an instance, and what it tells them as it moves on."""
import re

import pytest
from jsonschema import Draft202012Validator

from support import GOOD_FORM
from portal.batches import runner
from portal.infra.extensions import db
from portal.models import BatchItem
from portal.workflow import engine

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture
def users(users, factory):
    users["dave"] = factory.user("dave")  # no workflow role, takes part in nothing
    return users


def _start(api, starter="carol", data=None):
    response = api(starter).post("/instances", json={
        "process": "expense", "title": "Taxi to the airport", "data": data or {"ref": "T-1"}})
    assert response.status_code == 201
    return response.get_json()["instance"]


def _show(api, name, instance_id):
    response = api(name).get(f"/instances/{instance_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["instance"]


def _approve(api, name, task_id, **body):
    body.setdefault("action", "approve")
    response = api(name).post(f"/tasks/{task_id}/approve", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)


# --- who may read it --------------------------------------------------------------------

def test_starter_assignee_and_admin_read_a_new_instance(api, users):
    started = _start(api)
    [first_task] = started["tasks"]
    answers = [_show(api, name, started["id"]) for name in ("carol", "alice", "admin")]
    assert answers[0] == answers[1] == answers[2]
    instance = answers[0]
    assert {k: instance[k] for k in ("id", "title", "status", "suspended", "process", "version",
                                     "process_name", "variables", "created_by",
                                     "finished_at")} == {
        "id": started["id"], "title": "Taxi to the airport", "status": "running",
        "suspended": False, "process": "expense", "version": 1,
        "process_name": "Expense claim", "variables": {"ref": "T-1"}, "created_by": "carol",
        "finished_at": None}
    assert TIMESTAMP.match(instance["created_at"])
    assert instance["current"] == [{"task_id": first_task["id"], "node_key": "manager",
                                    "node_name": "Manager review", "assignee": "user:alice"}]
    [pending] = instance["tasks"]
    assert {k: pending[k] for k in ("id", "instance_id", "node_id", "node_key", "status",
                                    "outcome", "assignee", "locked_by", "completed_at")} == {
        "id": first_task["id"], "instance_id": started["id"],
        "node_id": first_task["node_id"], "node_key": "manager", "status": "pending",
        "outcome": None, "assignee": "user:alice", "locked_by": None, "completed_at": None}
    assert instance["all_tasks"] == instance["tasks"]
    [start] = instance["history"]
    assert {k: start[k] for k in ("user", "action", "node_key", "comment", "form",
                                  "batch_item_id")} == {
        "user": "carol", "action": "start", "node_key": None, "comment": None, "form": None,
        "batch_item_id": None}
    assert TIMESTAMP.match(start["at"])


def test_others_get_the_same_404_as_for_a_missing_instance(api, users):
    started = _start(api)
    missing = api("dave").get(f"/instances/{started['id'] + 1000}")
    assert missing.status_code == 404
    body = missing.get_json()
    assert isinstance(body["error"], str) and body["error"].strip()
    # bob holds the finance role, whose task does not exist yet
    for name in ("dave", "bob"):
        hidden = api(name).get(f"/instances/{started['id']}")
        assert (hidden.status_code, hidden.get_json()) == (404, body), name
        assert "Taxi" not in hidden.get_data(as_text=True)


def test_a_supervisor_reads_any_instance_as_the_contract_says(api, users):
    started = _start(api)
    assert _show(api, "sam", started["id"])["id"] == started["id"]


def test_the_next_assignee_may_read_it_once_their_task_exists(api, users):
    started = _start(api)
    assert api("bob").get(f"/instances/{started['id']}").status_code == 404
    _approve(api, "alice", started["tasks"][0]["id"], form=GOOD_FORM)
    assert _show(api, "bob", started["id"])["current"][0]["assignee"] == "role:finance"
    # alice handled hers and still reads it; dave never took part
    assert _show(api, "alice", started["id"])["status"] == "running"
    assert api("dave").get(f"/instances/{started['id']}").status_code == 404


@pytest.mark.parametrize("path", [
    "/instances/0", "/instances/-1", "/instances/abc", "/instances/1.5",
    "/instances/2147483648", "/instances/99999999999999999999",
])
def test_ids_that_name_no_instance_are_404(api, users, path):
    _start(api)
    response = api("admin").get(path)
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["error"].strip()


def test_a_token_is_required(client, api, users):
    started = _start(api)
    response = client.get(f"/api/v1/instances/{started['id']}")
    assert response.status_code == 401 and "Taxi" not in response.get_data(as_text=True)


# --- what it tells as it moves on -------------------------------------------------------

def test_an_approval_moves_current_on_and_grows_history_and_variables(api, users):
    started = _start(api)
    manager_task = started["tasks"][0]["id"]
    _approve(api, "alice", manager_task, comment="ok",
             form={"amount": "12.5", "category": "Meals", "note": "taxi"})

    instance = _show(api, "carol", started["id"])
    assert instance["status"] == "running" and instance["finished_at"] is None
    [current] = instance["current"]
    assert (current["node_key"], current["node_name"], current["assignee"]) == (
        "finance", "Finance review", "role:finance")
    assert current["task_id"] != manager_task
    assert [t["id"] for t in instance["tasks"]] == [current["task_id"]]
    every_task = [(t["id"], t["node_key"], t["status"], t["outcome"])
                  for t in instance["all_tasks"]]
    assert every_task == [
        (manager_task, "manager", "done", "approve"),
        (current["task_id"], "finance", "pending", None)]
    assert TIMESTAMP.match(instance["all_tasks"][0]["completed_at"])
    # the engine merges the completed task's cleaned form values and its action
    assert instance["variables"] == {"ref": "T-1", "amount": 12.5, "category": "Meals",
                                     "note": "taxi", "action": "approve"}
    start, approval = instance["history"]
    assert start["action"] == "start"
    assert {k: approval[k] for k in ("user", "action", "node_key", "comment", "form",
                                     "batch_item_id")} == {
        "user": "alice", "action": "approve", "node_key": "manager", "comment": "ok",
        "form": {"amount": 12.5, "category": "Meals", "note": "taxi"}, "batch_item_id": None}
    assert start["at"] <= approval["at"]

    _approve(api, "bob", current["task_id"])
    done = _show(api, "carol", started["id"])
    assert done["status"] == "approved" and TIMESTAMP.match(done["finished_at"])
    assert done["current"] == [] and done["tasks"] == []
    assert [(h["user"], h["action"], h["node_key"]) for h in done["history"]] == [
        ("carol", "start", None), ("alice", "approve", "manager"), ("bob", "approve", "finance")]
    assert len(done["all_tasks"]) == 2


def test_a_rejection_ends_it_as_rejected(api, users):
    started = _start(api)
    _approve(api, "alice", started["tasks"][0]["id"], action="reject", comment="no receipt")
    instance = _show(api, "alice", started["id"])
    assert instance["status"] == "rejected" and instance["current"] == []
    assert instance["variables"]["action"] == "reject"
    assert [(h["action"], h["comment"]) for h in instance["history"]] == [
        ("start", None), ("reject", "no receipt")]


def test_history_names_the_batch_item_and_suspension_shows(api, factory, users):
    [task] = factory.tasks(1, starter=users["carol"])
    batch = factory.batch(users["alice"], [task])
    runner.run_inline(batch.id)
    [item_id] = db.session.execute(db.select(BatchItem.id).where(
        BatchItem.batch_id == batch.id)).scalars().all()
    engine.set_suspended(task.instance_id, users["admin"], True)
    db.session.commit()

    instance = _show(api, "carol", task.instance_id)
    assert instance["suspended"] is True
    assert [(h["user"], h["action"], h["batch_item_id"]) for h in instance["history"]] == [
        ("carol", "start", None), ("alice", "approve", item_id), ("admin", "suspend", None)]
    assert instance["variables"] == {**GOOD_FORM, "action": "approve"}


# --- the document -----------------------------------------------------------------------

def test_the_document_lists_the_operation_and_the_answer_fits_it(client, api, users):
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/instances/{instance_id}"]["get"]
    assert operation["tags"] == ["Instances"]
    assert [(p["name"], p["in"], p["schema"]["type"]) for p in operation["parameters"]] == [
        ("instance_id", "path", "integer"), ("history_limit", "query", "integer"),
        ("history_cursor", "query", "integer"), ("tasks_limit", "query", "integer"),
        ("tasks_cursor", "query", "integer")]
    assert {"200", "401", "404"} <= set(operation["responses"])
    reply_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]

    started = _start(api)
    _approve(api, "alice", started["tasks"][0]["id"], comment="ok", form=GOOD_FORM)
    answer = api("carol").get(f"/instances/{started['id']}").get_json()
    # the answer checked against the published schema, its $refs resolved in the document
    validator = Draft202012Validator({**reply_schema, "components": document["components"]})
    assert list(validator.iter_errors(answer)) == []
    broken = {"instance": {**answer["instance"], "history": [{"at": 1}]}}
    assert list(validator.iter_errors(broken))  # the check can fail
