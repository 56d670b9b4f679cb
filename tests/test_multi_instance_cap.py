"""MAX_MULTI_INSTANCE: the most elements of a multi-instance (会签) collection, checked when an instance
starts and when a decision enters the node; more is a 422 naming the variable, and nothing is written."""
import pytest

from bpmn_support import end, flow, multi_instance, process_xml, user_task
from support import login, csrf_token
from portal.batches import creation, runner
from portal.infra.extensions import db
from portal.models import BatchItem, History, Instance, Task
from portal.workflow import engine
from portal.workflow.process_files import load_process_file

# review (alice) -> sign (one task per name in ${signers}) -> end
REVIEWED = process_xml("reviewed", (
    user_task("review", "alice")
    + user_task("sign", "${signer}", multi=multi_instance("${signers}", "signer"))
    + end("done") + flow("f0", "start", "review") + flow("f1", "review", "sign") + flow("f2", "sign", "done")))
# sign first: the countersign is entered when the instance starts
SIGNED = process_xml("signed", (
    user_task("sign", "${signer}", multi=multi_instance("${signers}", "signer"))
    + end("done") + flow("f0", "start", "sign") + flow("f1", "sign", "done")))


@pytest.fixture
def processes(app, users):
    for name, content in (("reviewed.bpmn", REVIEWED), ("signed.bpmn", SIGNED)):
        load_process_file(name, content)
    db.session.commit()


def _counts():
    db.session.expire_all()
    return (db.session.query(Instance).count(), db.session.query(Task).count(),
            db.session.query(History).count())


def test_the_cap_is_a_setting_of_200_by_default(app):
    assert app.config["MAX_MULTI_INSTANCE"] == 200


@pytest.mark.parametrize("key", ["signed", "reviewed"])
def test_starting_with_more_signers_than_the_cap_is_a_422_naming_the_variable_and_writes_nothing(
        api, processes, key):
    # "reviewed" enters its countersign only later: the start data is checked all the same.
    signers = [f"signer{i}" for i in range(201)]
    response = api("alice").post("/instances", json={"process": key, "title": "Many", "data": {"signers": signers}})
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert "signers" in body["errors"] and "signers" in body["error"]
    assert "200" in body["errors"]["signers"]
    assert _counts() == (0, 0, 0)


def test_a_collection_at_the_cap_starts(app, api, processes):
    app.config["MAX_MULTI_INSTANCE"] = 2
    try:
        response = api("bob").post("/instances", json={
            "process": "signed", "title": "Two", "data": {"signers": ["alice", "carol"]}})
        assert response.status_code == 201, response.get_json()
        assert len(response.get_json()["instance"]["tasks"]) == 2
        response = api("bob").post("/instances", json={
            "process": "signed", "title": "Three", "data": {"signers": ["alice", "carol", "sam"]}})
        assert response.status_code == 422 and "signers" in response.get_json()["errors"]
    finally:
        app.config["MAX_MULTI_INSTANCE"] = 200


@pytest.fixture
def started_under_a_higher_cap(app, users, processes):
    """An instance at ``review`` whose three signers were accepted when it started; the cap is now 2."""
    instance = engine.start_instance("reviewed", "Case", {"signers": ["bob", "carol", "sam"]}, users["admin"])
    db.session.commit()
    app.config["MAX_MULTI_INSTANCE"] = 2
    yield instance
    app.config["MAX_MULTI_INSTANCE"] = 200


def _unchanged(instance_id, state):
    db.session.expire_all()
    instance = db.session.get(Instance, instance_id)
    assert instance.state == state and instance.status == "running"
    assert [(t.node.key, t.status) for t in instance.tasks] == [("review", "pending")]
    assert [h.action for h in db.session.query(History).filter_by(instance_id=instance_id)] == ["start"]


def test_a_decision_entering_a_countersign_beyond_the_cap_is_a_422_and_writes_nothing(
        api, started_under_a_higher_cap):
    instance = started_under_a_higher_cap
    state, task = instance.state, instance.tasks[0]
    response = api("alice").post(f"/tasks/{task.id}/approve", json={"action": "approve"})
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert "signers" in body["errors"] and "signers" in body["error"]
    _unchanged(instance.id, state)


def test_a_batch_item_entering_a_countersign_beyond_the_cap_fails_for_validation_naming_it(
        users, started_under_a_higher_cap):
    instance = started_under_a_higher_cap
    state, task = instance.state, instance.tasks[0]
    batch = creation.create_batch(users["alice"], task.node, task_ids=[task.id], action="approve", form={})
    db.session.commit()
    runner.run_inline(batch.id)
    db.session.expire_all()
    item = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)).scalar_one()
    assert (item.status, item.error_code, item.retry_count) == ("failed", "validation", 0)
    assert "signers" in item.error and "2" in item.error
    assert item.error_kind == "validation"  # waits for a person: never retried automatically
    db.session.expire_all()
    instance = db.session.get(Instance, instance.id)
    assert instance.state == state and [(t.node.key, t.status) for t in instance.tasks] == [("review", "pending")]


def test_the_task_page_says_why_a_decision_entering_a_countersign_beyond_the_cap_is_refused(
        client, started_under_a_higher_cap):
    instance = started_under_a_higher_cap
    state, task = instance.state, instance.tasks[0]
    login(client, "alice")
    token = csrf_token(client, f"/tasks/{task.id}")
    response = client.post(f"/tasks/{task.id}/decide", data={"action": "approve", "csrf_token": token})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "signers: A multi-instance collection holds at most 2 elements; this one holds 3." in html
    _unchanged(instance.id, state)
