"""/api/v1 instances, nodes and tasks: shapes, visibility, conflicts and bad input."""
import pytest

from support import GOOD_FORM, Api
from portal.infra.extensions import db
from portal.models import History, Instance, Task
from portal.workflow import engine


@pytest.fixture
def users(users, factory):
    users["dave"] = factory.user("dave", workflow_roles="finance")
    return users


def _history_count():
    return db.session.execute(db.select(db.func.count(History.id))).scalar()


def _readable_error(response):
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"].strip()
    return body


def _task(task_id):
    db.session.expire_all()
    return db.session.get(Task, task_id)


def _finance_task(factory, users):
    """A pending role task for "finance" that nobody holds."""
    manager = factory.tasks(1, starter=users["admin"])[0]
    engine.decide(manager.id, users["alice"], "approve", None, GOOD_FORM)
    db.session.commit()
    return manager.instance.tasks[-1]


# --- authentication -------------------------------------------------------------------

def test_requests_without_a_valid_token_get_401(client, users, factory):
    missing = client.get("/api/v1/tasks")
    assert missing.status_code == 401 and _readable_error(missing)
    bad = client.get("/api/v1/tasks", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and _readable_error(bad)
    token = factory.token(users["alice"])
    users["alice"].disabled = True
    db.session.commit()
    assert Api(client, token).get("/tasks").status_code == 401


# --- instances ------------------------------------------------------------------------

def test_start_instance_answers_its_first_task(api, users):
    response = api("carol").post("/instances", json={"process": "expense", "title": "Taxi",
                                                     "data": {"ref": "T-1"}})
    assert response.status_code == 201
    instance = response.get_json()["instance"]
    assert (instance["title"], instance["status"]) == ("Taxi", "running")
    [task] = instance["tasks"]
    assert task["assignee"] == "user:alice"
    stored = db.session.get(Task, task["id"])
    assert stored.node_id == task["node_id"] and stored.node.key == "manager"
    assert db.session.get(Instance, instance["id"]).data == {"ref": "T-1"}

    # approving it opens the role task, reported as such
    approved = api("alice").post(f"/tasks/{task['id']}/approve",
                                 json={"action": "approve", "form": GOOD_FORM})
    assert approved.status_code == 200
    db.session.expire_all()
    following = db.session.get(Instance, instance["id"]).tasks[-1]
    pending = api("bob").get("/tasks").get_json()["tasks"]
    assert [t["id"] for t in pending] == [following.id]
    assert pending[0]["assignee"] == "role:finance"


@pytest.mark.parametrize("body, field", [
    ({"process": "nope", "title": "x"}, "process"),
    ({"process": 7, "title": "x"}, "process"),
    ({"process": "expense"}, "title"),
    ({"process": "expense", "title": "   "}, "title"),
    ({"process": "expense", "title": ["x"]}, "title"),
    ({"process": "expense", "title": "x" * 301}, "title"),
    ({"process": "expense", "title": "x", "data": [1, 2]}, "data"),
    ({"process": "expense", "title": "x", "owner": "me"}, "owner"),
])
def test_start_instance_names_the_faulty_field(api, body, field):
    response = api("carol").post("/instances", json=body)
    assert response.status_code == 422
    assert field in _readable_error(response)["errors"]
    assert db.session.execute(db.select(db.func.count(Instance.id))).scalar() == 0


@pytest.mark.parametrize("kwargs", [
    {"data": "process=expense", "content_type": "application/x-www-form-urlencoded"},
    {"data": "{not json", "content_type": "application/json"},
    {"json": ["expense", "title"]},
    {"json": "expense"},
    {},
])
def test_start_instance_refuses_a_body_that_is_not_an_object(api, kwargs):
    response = api("carol").post("/instances", **kwargs)
    assert response.status_code == 400
    _readable_error(response)
    assert db.session.execute(db.select(db.func.count(Instance.id))).scalar() == 0


# --- nodes ----------------------------------------------------------------------------

def test_nodes_lists_where_the_caller_has_pending_tasks(api, factory, users):
    tasks = factory.tasks(3, starter=users["admin"])
    nodes = api("alice").get("/nodes").get_json()["nodes"]
    assert len(nodes) == 1
    node = nodes[0]
    assert {k: node[k] for k in ("id", "key", "name", "process", "version", "pending")} == {
        "id": tasks[0].node_id, "key": "manager", "name": "Manager review",
        "process": "expense", "version": 1, "pending": 3}
    assert [f["key"] for f in node["fields"]][:2] == ["amount", "category"]
    assert api("alice").get("/nodes?process=expense").get_json()["nodes"] == nodes
    assert api("alice").get("/nodes?process=other").get_json()["nodes"] == []
    assert api("carol").get("/nodes").get_json()["nodes"] == []

    engine.decide(tasks[0].id, users["alice"], "approve", None, GOOD_FORM)
    db.session.commit()
    [finance] = api("bob").get("/nodes").get_json()["nodes"]
    assert (finance["key"], finance["pending"]) == ("finance", 1)
    assert api("alice").get("/nodes").get_json()["nodes"][0]["pending"] == 2


# --- listing tasks ----------------------------------------------------------------------

def test_tasks_are_paged_with_a_cursor(api, factory, users):
    tasks = factory.tasks(5, starter=users["admin"])
    seen, cursor, pages = [], None, 0
    while True:
        url = "/tasks?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = api("alice").get(url).get_json()
        assert len(body["tasks"]) <= 2
        seen += body["tasks"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [t["id"] for t in seen] == [t.id for t in tasks]
    first = seen[0]
    assert {k: first[k] for k in ("instance_id", "title", "node_id", "status", "locked_by")} == {
        "instance_id": tasks[0].instance_id, "title": "Claim 0", "node_id": tasks[0].node_id,
        "status": "pending", "locked_by": None}
    assert api("carol").get("/tasks").get_json() == {"tasks": [], "next_cursor": None}
    assert api("alice").get(f"/tasks?node_id={tasks[0].node_id + 1000}").get_json()["tasks"] == []


def test_tasks_report_who_holds_a_lock(api, factory, users):
    task = _finance_task(factory, users)
    engine.take_task(task.id, users["dave"])
    db.session.commit()
    [listed] = api("bob").get("/tasks").get_json()["tasks"]
    assert (listed["id"], listed["locked_by"]) == (task.id, "dave")


def test_done_tasks_are_the_ones_the_caller_completed(api, factory, users):
    tasks = factory.tasks(3, starter=users["admin"])
    assert api("alice").post(f"/tasks/{tasks[1].id}/approve",
                             json={"action": "approve", "form": GOOD_FORM}).status_code == 200
    done = api("alice").get("/tasks?status=done").get_json()["tasks"]
    assert [(t["id"], t["status"], t["outcome"]) for t in done] == [
        (tasks[1].id, "done", "approve")]
    assert api("bob").get("/tasks?status=done").get_json()["tasks"] == []
    pending = api("alice").get("/tasks?status=pending").get_json()["tasks"]
    assert [t["id"] for t in pending] == [tasks[0].id, tasks[2].id]


@pytest.mark.parametrize("query", [
    "limit=-1", "limit=0", "limit=100000", "limit=ten", "cursor=abc", "cursor=-5",
    "node_id=x", "node_id=0", "status=bogus", "status=recalled",
    # larger than an id column holds (PostgreSQL would refuse the comparison)
    "node_id=99999999999999999999", "cursor=99999999999999999999", "cursor=2147483648",
])
def test_task_list_refuses_bad_parameters(api, factory, users, query):
    factory.tasks(1, starter=users["admin"])
    response = api("alice").get(f"/tasks?{query}")
    assert response.status_code == 400
    _readable_error(response)


# --- approving ---------------------------------------------------------------------------

def test_approve_answers_the_task_and_moves_the_instance_on(api, factory, users):
    task = factory.tasks(1, starter=users["admin"])[0]
    response = api("alice").post(f"/tasks/{task.id}/approve", json={
        "action": "approve", "comment": "ok", "form": {"amount": "12.5", "category": "Meals"}})
    assert response.status_code == 200
    body = response.get_json()["task"]
    assert (body["id"], body["status"], body["outcome"], body["locked_by"]) == (
        task.id, "done", "approve", None)
    stored = _task(task.id)
    assert stored.form == {"amount": 12.5, "category": "Meals"} and stored.comment == "ok"
    assert [t.node.key for t in stored.instance.tasks] == ["manager", "finance"]


def test_reject_needs_no_form_and_ends_the_instance(api, factory, users):
    task = factory.tasks(1, starter=users["admin"])[0]
    response = api("alice").post(f"/tasks/{task.id}/approve",
                                 json={"action": "reject", "comment": "x" * 2000})
    assert response.status_code == 200
    assert _task(task.id).instance.status == "rejected"


def test_validation_errors_name_each_field(api, factory, users):
    task = factory.tasks(1, starter=users["admin"])[0]
    response = api("alice").post(f"/tasks/{task.id}/approve",
                                 json={"action": "approve", "form": {"amount": "abc"}})
    assert response.status_code == 422
    assert set(_readable_error(response)["errors"]) == {"amount", "category"}
    assert _task(task.id).status == "pending"


GARBAGE_BODIES = [
    {"data": "action=approve", "content_type": "text/plain"},
    {"data": "{", "content_type": "application/json"},
    {"json": ["approve"]},
    {"json": "approve"},
    {"json": 42},
    {"json": {"action": "maybe", "form": GOOD_FORM}},
    {"json": {"action": ["approve"], "form": GOOD_FORM}},
    {"json": {"form": GOOD_FORM}},
    {"json": {"action": "approve", "comment": "x" * 2001, "form": GOOD_FORM}},
    {"json": {"action": "approve", "comment": 12, "form": GOOD_FORM}},
    {"json": {"action": "approve", "form": [GOOD_FORM]}},
    {"json": {"action": "approve", "form": "amount=1"}},
    {"json": {"action": "approve", "form": dict(GOOD_FORM, amout=3)}},
    {"json": {"action": "approve", "form": GOOD_FORM, "coment": "typo"}},
    {"json": {"action": "approve", "form": dict(GOOD_FORM, amount=-1)}},
    {"json": {"action": "approve", "form": dict(GOOD_FORM, amount=True)}},
    {"json": {"action": "approve", "form": dict(GOOD_FORM, lines="not rows")}},
]


@pytest.mark.parametrize("kwargs", GARBAGE_BODIES)
def test_garbage_approvals_get_4xx_and_change_nothing(api, factory, users, kwargs):
    task = factory.tasks(1, starter=users["admin"])[0]
    before = _history_count()
    response = api("alice").post(f"/tasks/{task.id}/approve", **kwargs)
    assert response.status_code in (400, 422)
    _readable_error(response)
    assert _task(task.id).status == "pending"
    assert _history_count() == before


@pytest.mark.parametrize("path", [
    "/tasks/abc/approve", "/tasks/-1/approve", "/tasks/1.5/approve", "/tasks/0/approve",
    "/tasks/99999999999999999999/approve", "/tasks/2147483648/approve",
])
def test_task_ids_that_are_not_tasks_are_404(api, factory, users, path):
    factory.tasks(1, starter=users["admin"])
    response = api("alice").post(path, json={"action": "approve", "form": GOOD_FORM})
    assert response.status_code == 404
    _readable_error(response)


def test_tasks_of_others_are_404_even_once_done(api, factory, users):
    task = factory.tasks(1, starter=users["admin"])[0]
    body = {"action": "approve", "form": GOOD_FORM}
    assert api("carol").post(f"/tasks/{task.id}/approve", json=body).status_code == 404
    assert api("bob").post(f"/tasks/{task.id}/approve", json=body).status_code == 404
    assert api("alice").post(f"/tasks/{task.id}/approve", json=body).status_code == 200
    # done: its approver hears "conflict", everyone else still "not found"
    assert api("alice").post(f"/tasks/{task.id}/approve", json=body).status_code == 409
    assert api("carol").post(f"/tasks/{task.id}/approve", json=body).status_code == 404
    assert api("carol").post(f"/tasks/{task.id}/recall").status_code == 404


def test_conflicts_are_409_with_a_reason(api, factory, users):
    suspended, countersigning = factory.tasks(2, starter=users["admin"])
    engine.set_suspended(suspended.instance_id, users["admin"], True)
    engine.countersign(countersigning.id, users["alice"], "carol")
    locked = _finance_task(factory, users)
    engine.take_task(locked.id, users["bob"])
    db.session.commit()
    before = _history_count()
    cases = [(api("alice"), suspended, "suspended"),
             (api("alice"), countersigning, "countersign"),
             (api("dave"), locked, "locked")]
    for client, task, word in cases:
        response = client.post(f"/tasks/{task.id}/approve",
                               json={"action": "approve", "form": GOOD_FORM})
        assert response.status_code == 409
        assert word in _readable_error(response)["error"].lower()
    assert _history_count() == before
    # the holder of the lock may approve
    assert api("bob").post(f"/tasks/{locked.id}/approve",
                           json={"action": "approve"}).status_code == 200


# --- recall -------------------------------------------------------------------------------

def test_recall_takes_the_instance_back_while_the_next_task_is_untouched(api, factory, users):
    first, second = factory.tasks(2, starter=users["admin"])
    for task in (first, second):
        assert api("alice").post(f"/tasks/{task.id}/approve",
                                 json={"action": "approve", "form": GOOD_FORM}).status_code == 200
    response = api("alice").post(f"/tasks/{first.id}/recall")
    assert response.status_code == 200
    new_task = response.get_json()["task"]
    assert (new_task["status"], new_task["node_id"], new_task["instance_id"]) == (
        "pending", first.node_id, first.instance_id)
    statuses = [t.status for t in _task(first.id).instance.tasks]
    assert statuses == ["done", "recalled", "pending"]
    # a second recall of the same approval, or one after the next task was taken: 409
    assert api("alice").post(f"/tasks/{first.id}/recall").status_code == 409
    engine.take_task(_task(second.id).instance.tasks[-1].id, users["bob"])
    db.session.commit()
    conflict = api("alice").post(f"/tasks/{second.id}/recall")
    assert conflict.status_code == 409 and _readable_error(conflict)
    # a pending task cannot be recalled
    pending = api("alice").post(f"/tasks/{new_task['id']}/recall")
    assert pending.status_code == 409
