"""/api/v1 batches: creation, listing, items, retry, pause/resume/cancel.

Batches are run to the end in this process with ``runner.run_inline``; the
real worker processes are exercised elsewhere.
"""
import pytest

from support import GOOD_FORM, counts_from_items
from portal.batches import creation, dispatch, runner
from portal.infra.extensions import db
from portal.infra.queueing import get_queue
from portal.models import Batch, BatchItem, History, Task


@pytest.fixture
def tasks(factory, users):
    """Six pending tasks of alice at the manager node."""
    return factory.tasks(6, starter=users["admin"])


def _create(api, node_id, task_ids, **extra):
    body = {"node_id": node_id, "task_ids": task_ids, "action": "approve", "form": GOOD_FORM}
    body.update(extra)
    return api.post("/batches", json=body)


def _new_batch_id(api, tasks):
    return _create(api, tasks[0].node_id, [t.id for t in tasks]).get_json()["batch"]["id"]


def _batch_count():
    return db.session.execute(db.select(db.func.count(Batch.id))).scalar()


def _locked_task_count():
    return db.session.execute(db.select(db.func.count(Task.id)).where(
        Task.lock_holder_id.is_not(None))).scalar()


def _assert_counters_add_up(batch_json):
    parts = sum(batch_json[k] for k in ("pending", "running", "success", "failed", "ignored"))
    assert batch_json["total"] == parts
    stored = db.session.get(Batch, batch_json["id"])
    db.session.refresh(stored)
    derived = counts_from_items(stored.id)
    assert {k: getattr(stored, k) for k in derived} == derived


def _readable_error(response):
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"].strip()
    return body


def _run(api, batch_id, as_user="alice"):
    runner.run_inline(batch_id)
    return api(as_user).get(f"/batches/{batch_id}").get_json()["batch"]


# --- creating -------------------------------------------------------------------------

def test_batch_from_ids_runs_to_the_end(api, tasks):
    ids = [t.id for t in tasks]
    node_id = tasks[0].node_id
    response = _create(api("alice"), node_id, ids + [999999, ids[0]], comment="all fine",
                       concurrency=2)
    assert response.status_code == 202
    batch = response.get_json()["batch"]
    assert (batch["status"], batch["mode"], batch["node_id"], batch["created_by"]) == (
        "pending", "form", node_id, "alice")
    counts = (batch["total"], batch["pending"], batch["ignored"], batch["concurrency"])
    assert counts == (8, 6, 2, 2)
    assert batch["number"].startswith("B")
    _assert_counters_add_up(batch)
    # lanes were handed to RQ: as many as the concurrency allows (one on SQLite)
    assert get_queue().count == dispatch.lanes_for(db.session.get(Batch, batch["id"])) >= 1

    finished = _run(api, batch["id"])
    assert (finished["status"], finished["success"], finished["pending"], finished["failed"],
            finished["ignored"]) == ("finished", 6, 0, 0, 2)
    assert finished["finished_at"] is not None and finished["has_error_file"] is False
    _assert_counters_add_up(finished)
    for task in tasks:
        stored = db.session.get(Task, task.id)
        assert (stored.status, stored.outcome, stored.comment, stored.lock_batch_id) == (
            "done", "approve", "all fine", None)
    approvals = db.session.execute(db.select(db.func.count(History.id)).where(
        History.action == "approve")).scalar()
    assert approvals == 6

    items = api("alice").get(f"/batches/{batch['id']}/items").get_json()
    assert items["next_cursor"] is None
    statuses = {(i["task_id"], i["status"]) for i in items["items"]}
    assert statuses == {(t, "success") for t in ids} | {(999999, "ignored"), (ids[0], "ignored")}
    ignored = api("alice").get(f"/batches/{batch['id']}/items?status=ignored").get_json()["items"]
    assert sorted(i["task_id"] for i in ignored) == sorted([999999, ids[0]])
    assert all(i["error"] for i in ignored)
    assert set(items["items"][0]) >= {"id", "task_id", "status", "error", "retry_count",
                                      "finished_at"}


def test_tasks_that_are_not_the_callers_pending_ones_become_ignored_items(api, users, tasks):
    node_id = tasks[0].node_id
    done, mine = tasks[0], tasks[1]
    assert api("alice").post(f"/tasks/{done.id}/approve",
                             json={"action": "approve", "form": GOOD_FORM}).status_code == 200
    # carol holds no task here: everything she names is ignored, nothing is locked
    response = _create(api("carol"), node_id, [mine.id])
    assert response.status_code == 202
    theirs = response.get_json()["batch"]
    assert (theirs["status"], theirs["ignored"], theirs["pending"]) == ("finished", 1, 0)
    assert db.session.get(Task, mine.id).lock_holder_id is None

    batch = _create(api("alice"), node_id, [done.id, mine.id, "-3"]).get_json()["batch"]
    items = api("alice").get(f"/batches/{batch['id']}/items").get_json()["items"]
    reasons = {i["task_id"]: (i["status"], i["error_kind"]) for i in items}
    assert reasons == {done.id: ("ignored", "done"), mine.id: ("pending", None),
                       -3: ("ignored", "unavailable")}


def test_all_pending_with_a_title_filter(api, factory, users, tasks):
    hotels = factory.tasks(3, starter=users["admin"], title="Hotel 50%_off")
    node_id = tasks[0].node_id
    response = api("alice").post("/batches", json={
        "node_id": node_id, "all_pending": True, "filter": {"title_contains": "hotel 50%_"},
        "action": "approve", "form": GOOD_FORM})
    assert response.status_code == 202
    batch = response.get_json()["batch"]
    assert (batch["total"], batch["pending"]) == (3, 3)
    assert db.session.get(Batch, batch["id"]).filter == {"all_pending": True,
                                                         "title_contains": "hotel 50%_"}
    items = api("alice").get(f"/batches/{batch['id']}/items").get_json()["items"]
    assert sorted(i["task_id"] for i in items) == sorted(t.id for t in hotels)

    # once it ran, the rest without a filter; then nothing is left
    assert _run(api, batch["id"])["success"] == 3
    rest = api("alice").post("/batches", json={"node_id": node_id, "all_pending": True,
                                               "action": "approve", "form": GOOD_FORM})
    assert rest.get_json()["batch"]["total"] == len(tasks)
    assert _run(api, rest.get_json()["batch"]["id"])["success"] == len(tasks)
    before = _batch_count()
    empty = api("alice").post("/batches", json={"node_id": node_id, "all_pending": True,
                                                "action": "approve", "form": GOOD_FORM})
    assert empty.status_code == 422
    assert "no pending tasks" in _readable_error(empty)["error"]
    assert _batch_count() == before


def test_an_invalid_shared_form_creates_nothing(api, tasks):
    response = _create(api("alice"), tasks[0].node_id, [t.id for t in tasks],
                       form={"amount": "lots"})
    assert response.status_code == 422
    # The category is left to each task (checked per item when it runs): not the form's fault.
    assert set(_readable_error(response)["errors"]) == {"amount"}
    assert _batch_count() == 0 and _locked_task_count() == 0
    assert get_queue().count == 0


def test_a_batch_holds_at_most_max_import_rows_tasks(api, tasks, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_IMPORT_ROWS", 5)
    too_many = _create(api("alice"), tasks[0].node_id, [t.id for t in tasks])
    assert too_many.status_code == 422 and "task_ids" in _readable_error(too_many)["errors"]
    everything = api("alice").post("/batches", json={
        "node_id": tasks[0].node_id, "all_pending": True, "action": "approve", "form": GOOD_FORM})
    assert everything.status_code == 422
    assert _batch_count() == 0 and _locked_task_count() == 0
    assert _create(api("alice"), tasks[0].node_id, [t.id for t in tasks[:5]]).status_code == 202


def test_unknown_node_is_404(api, tasks):
    response = _create(api("alice"), 999999, [tasks[0].id])
    assert response.status_code == 404 and _readable_error(response)
    huge = _create(api("alice"), 2**40, [tasks[0].id])
    assert huge.status_code == 404
    assert _batch_count() == 0


GARBAGE_CREATE = [
    {"data": "node_id=1", "content_type": "application/x-www-form-urlencoded"},
    {"data": "[1, 2", "content_type": "application/json"},
    {"json": [1, 2, 3]},
    {"json": "node_id"},
    {"json": {"node_id": "abc", "task_ids": "IDS", "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": True, "task_ids": "IDS", "action": "approve", "form": GOOD_FORM}},
    {"json": {"task_ids": "IDS", "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": [], "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": "1,2", "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": ["one"], "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": [1.5], "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": [True], "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": [None], "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": [2**40], "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "all_pending": True, "action": "approve",
              "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "all_pending": "yes", "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "all_pending": True, "filter": "Claim", "action": "approve",
              "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "all_pending": True, "filter": {"title": "Claim"},
              "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "all_pending": True, "filter": {"title_contains": 5},
              "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "filter": {"title_contains": "C"},
              "action": "approve", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "yes", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "form": GOOD_FORM}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve", "form": GOOD_FORM,
              "comment": "x" * 2001}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve", "form": [GOOD_FORM]}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve",
              "form": dict(GOOD_FORM, colour="red")}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve", "form": GOOD_FORM,
              "priority": "high"}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve", "form": GOOD_FORM,
              "concurrency": 0}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve", "form": GOOD_FORM,
              "concurrency": "many"}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve", "form": GOOD_FORM,
              "concurrency": True}},
    {"json": {"node_id": "NODE", "task_ids": "IDS", "action": "approve", "form": GOOD_FORM,
              "concurrency": 2.5}},
]


def _fill(value, node_id, task_ids):
    """Put the real node and task ids in place of the NODE and IDS markers."""
    if value == "NODE":
        return node_id
    if value == "IDS":
        return task_ids
    if isinstance(value, dict):
        return {k: _fill(v, node_id, task_ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("kwargs", GARBAGE_CREATE)
def test_garbage_creation_requests_get_4xx_and_create_nothing(api, tasks, kwargs):
    if "json" in kwargs:
        kwargs = {"json": _fill(kwargs["json"], tasks[0].node_id, [t.id for t in tasks])}
    response = api("alice").post("/batches", **kwargs)
    assert response.status_code in (400, 404, 422)
    _readable_error(response)
    assert _batch_count() == 0 and _locked_task_count() == 0
    assert get_queue().count == 0


# --- reading ------------------------------------------------------------------------------

def test_batches_are_visible_to_their_creator_and_supervisors_only(api, tasks):
    node_id = tasks[0].node_id
    first = _create(api("alice"), node_id, [tasks[0].id]).get_json()["batch"]
    second = _create(api("alice"), node_id, [tasks[1].id, tasks[2].id]).get_json()["batch"]
    assert [b["id"] for b in api("alice").get("/batches").get_json()["batches"]] == [
        first["id"], second["id"]]
    assert api("carol").get("/batches").get_json() == {"batches": [], "next_cursor": None}
    for path in (f"/batches/{first['id']}", f"/batches/{first['id']}/items"):
        hidden = api("carol").get(path)
        assert hidden.status_code == 404 and _readable_error(hidden)
    for name in ("sam", "admin"):
        listed = api(name).get("/batches").get_json()["batches"]
        assert [b["id"] for b in listed] == [first["id"], second["id"]]
        assert api(name).get(f"/batches/{second['id']}").get_json()["batch"]["total"] == 2

    paged = api("alice").get("/batches?limit=1").get_json()
    assert [b["id"] for b in paged["batches"]] == [first["id"]]
    rest = api("alice").get(f"/batches?limit=1&cursor={paged['next_cursor']}").get_json()
    assert [b["id"] for b in rest["batches"]] == [second["id"]] and rest["next_cursor"] is None

    _run(api, first["id"])
    finished = api("alice").get("/batches?status=finished").get_json()["batches"]
    assert [b["id"] for b in finished] == [first["id"]]
    assert api("alice").get("/batches?status=running").get_json()["batches"] == []


@pytest.mark.parametrize("path", [
    "/batches?status=done", "/batches?limit=-1", "/batches?limit=0", "/batches?cursor=abc",
    "/batches?cursor=-1", "/batches?cursor=99999999999999999999",
    "/batches/BATCH/items?status=nope", "/batches/BATCH/items?limit=501",
    "/batches/BATCH/items?cursor=x",
])
def test_listings_refuse_bad_parameters(api, tasks, path):
    batch = _create(api("alice"), tasks[0].node_id, [tasks[0].id]).get_json()["batch"]
    response = api("alice").get(path.replace("BATCH", str(batch["id"])))
    assert response.status_code == 400 and _readable_error(response)


@pytest.mark.parametrize("path", ["/batches/abc", "/batches/-1", "/batches/0",
                                  "/batches/99999999999999999999", "/batches/2147483648/items"])
def test_batch_ids_that_are_not_batches_are_404(api, tasks, path):
    response = api("sam").get(path)
    assert response.status_code == 404 and _readable_error(response)


def test_failed_items_include_those_that_failed_at_import(api, users, tasks):
    node = tasks[0].node
    rows = {tasks[0].id: {"error": "Row 2: amount is not a number", "source_ref": "2"},
            tasks[1].id: {"decision": {"action": "approve", "form": GOOD_FORM},
                          "source_ref": "3"},
            tasks[2].id: {"decision": {"action": "approve", "form": {"amount": "x"}},
                          "source_ref": "4"}}
    batch = creation.create_batch(users["alice"], node, task_ids=list(rows), mode="single",
                                  rows=rows)
    db.session.commit()
    finished = _run(api, batch.id)
    assert (finished["status"], finished["success"], finished["failed"]) == ("finished", 1, 2)
    failed = api("alice").get(f"/batches/{batch.id}/items?status=failed").get_json()["items"]
    assert {(i["task_id"], i["status"]) for i in failed} == {
        (tasks[0].id, "import_failed"), (tasks[2].id, "failed")}
    only_import = api("alice").get(f"/batches/{batch.id}/items?status=import_failed")
    assert [i["task_id"] for i in only_import.get_json()["items"]] == [tasks[0].id]


# --- retry --------------------------------------------------------------------------------

def _failed_batch(api, users, tasks, count=3):
    """A finished batch of alice whose items failed because she was disabled meanwhile."""
    batch = _create(api("alice"), tasks[0].node_id, [t.id for t in tasks[:count]])
    batch_id = batch.get_json()["batch"]["id"]
    users["alice"].disabled = True
    db.session.commit()
    finished = _run(api, batch_id, as_user="sam")
    assert (finished["status"], finished["failed"]) == ("finished", count)
    users["alice"].disabled = False
    db.session.commit()
    return batch_id


def test_supervisors_retry_failed_items_and_they_succeed(api, users, tasks):
    batch_id = _failed_batch(api, users, tasks)
    refused = api("alice").post(f"/batches/{batch_id}/retry")
    assert refused.status_code == 403 and _readable_error(refused)
    assert api("carol").post(f"/batches/{batch_id}/retry").status_code == 404
    assert db.session.get(Batch, batch_id).failed == 3

    items = api("sam").get(f"/batches/{batch_id}/items").get_json()["items"]
    one = api("sam").post(f"/batches/{batch_id}/retry", json={"item_ids": [items[0]["id"]]})
    assert one.status_code == 202
    body = one.get_json()
    assert (body["retried"], body["at_limit"]) == (1, 0)
    assert (body["batch"]["status"], body["batch"]["pending"], body["batch"]["failed"]) == (
        "running", 1, 2)
    assert get_queue().count >= 1

    rest = api("admin").post(f"/batches/{batch_id}/retry")
    assert rest.status_code == 202 and rest.get_json()["retried"] == 2
    finished = _run(api, batch_id)
    assert (finished["status"], finished["success"], finished["failed"]) == ("finished", 3, 0)
    _assert_counters_add_up(finished)
    retried = db.session.execute(db.select(BatchItem).where(
        BatchItem.batch_id == batch_id)).scalars().all()
    assert [i.retry_count for i in retried] == [1, 1, 1]
    assert {i.retried_by.username for i in retried} == {"sam", "admin"}


def test_retry_reports_items_at_the_limit(api, users, tasks, app):
    batch_id = _failed_batch(api, users, tasks, count=1)
    db.session.execute(db.update(BatchItem).values(retry_count=app.config["BATCH_RETRY_LIMIT"]))
    db.session.commit()
    response = api("sam").post(f"/batches/{batch_id}/retry", json={})
    assert response.status_code == 202
    assert (response.get_json()["retried"], response.get_json()["at_limit"]) == (0, 1)
    assert response.get_json()["batch"]["status"] == "finished"


@pytest.mark.parametrize("kwargs", [
    {"json": {"item_ids": "all"}},
    {"json": {"item_ids": [1, "2"]}},
    {"json": {"item_ids": [True]}},
    {"json": {"item_ids": [2**40]}},
    {"json": {"item_ids": list(range(1, 5002))}},
    {"json": {"items": [1]}},
    {"json": [1, 2]},
    {"data": "item_ids=1", "content_type": "text/plain"},
])
def test_garbage_retry_requests_get_4xx_and_retry_nothing(api, users, tasks, kwargs):
    batch_id = _failed_batch(api, users, tasks, count=2)
    response = api("sam").post(f"/batches/{batch_id}/retry", **kwargs)
    assert response.status_code in (400, 422) and _readable_error(response)
    db.session.expire_all()
    assert db.session.get(Batch, batch_id).failed == 2


# --- pause, resume, cancel -------------------------------------------------------------------

def test_pause_resume_cancel_follow_the_batch_state(api, tasks):
    batch_id = _new_batch_id(api("alice"), tasks)
    paused = api("alice").post(f"/batches/{batch_id}/pause")
    assert paused.status_code == 202 and paused.get_json()["batch"]["status"] == "paused"
    conflict = api("alice").post(f"/batches/{batch_id}/pause")
    assert conflict.status_code == 409 and _readable_error(conflict)
    assert runner.run_inline(batch_id) == 0  # a paused batch runs nothing

    lanes_before = get_queue().count
    resumed = api("alice").post(f"/batches/{batch_id}/resume")
    assert resumed.status_code == 202 and resumed.get_json()["batch"]["status"] == "running"
    assert get_queue().count > lanes_before
    assert api("alice").post(f"/batches/{batch_id}/resume").status_code == 409

    claim = runner.claim_next(batch_id)  # one item runs to the end; the rest get cancelled
    runner.run_claimed_item(claim, claim_next_item=False)
    cancelled = api("alice").post(f"/batches/{batch_id}/cancel")
    assert cancelled.status_code == 202
    batch = cancelled.get_json()["batch"]
    assert (batch["status"], batch["success"], batch["cancelled"], batch["pending"]) == (
        "cancelled", 1, 5, 0)
    _assert_counters_add_up(batch)
    assert _locked_task_count() == 0
    for action in ("pause", "resume", "cancel"):
        assert api("alice").post(f"/batches/{batch_id}/{action}").status_code == 409
    assert api("sam").post(f"/batches/{batch_id}/retry").status_code == 409


def test_only_the_creator_and_supervisors_steer_a_batch(api, tasks):
    batch_id = _new_batch_id(api("alice"), tasks)
    for action in ("pause", "resume", "cancel"):
        hidden = api("carol").post(f"/batches/{batch_id}/{action}")
        assert hidden.status_code == 404 and _readable_error(hidden)
    assert db.session.get(Batch, batch_id).status == "pending"
    assert api("sam").post(f"/batches/{batch_id}/pause").status_code == 202
    assert api("admin").post(f"/batches/{batch_id}/resume").status_code == 202
    assert api("sam").post(f"/batches/{batch_id}/cancel").status_code == 202
    assert api("alice").get(f"/batches/{batch_id}").get_json()["batch"]["status"] == "cancelled"
