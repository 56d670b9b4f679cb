"""A task can never be approved twice, however the approvals race.

Two finance users go for the same role task, which nobody holds, at the same
moment: each thread has its own app context, hence its own session and
database connection, and a barrier starts them together. Exactly one commits;
the other finds the task done (409). The race is repeated so that a broken
row lock (PostgreSQL ``FOR UPDATE``, SQLite ``BEGIN IMMEDIATE``) would show.

The two branches of a BPMN parallel split race the same way: two users approve
their own task of one instance at the same moment, and the instance's engine
state must take both decisions in turn so that the join fires exactly once.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bpmn_support import end, flow, gateway, process_xml, user_task
from support import GOOD_FORM
from portal.batches import runner
from portal.errors import Conflict
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, History, Instance, Task, User
from portal.workflow import engine
from portal.workflow.engine import runtime
from portal.workflow.process_files import load_process_file

ROUNDS = 20


@pytest.fixture
def users(users, factory):
    users["dave"] = factory.user("dave", workflow_roles="finance")
    return users


def _finance_task_ids(factory, users, count):
    """Ids of ``count`` pending "role:finance" tasks that nobody holds."""
    ids = []
    for manager in factory.tasks(count, starter=users["admin"]):
        engine.decide(manager.id, users["alice"], "approve", None, GOOD_FORM)
        db.session.flush()
        ids.append(manager.instance.tasks[-1].id)
    db.session.commit()  # the racers must find no open transaction of ours
    return ids


def _race(*contenders):
    """Run the callables at the same moment, one thread each; their results in order."""
    barrier = threading.Barrier(len(contenders), timeout=30)

    def start_together(contender):
        barrier.wait()
        return contender()

    with ThreadPoolExecutor(len(contenders)) as pool:
        return list(pool.map(start_together, contenders))


def _approvals_of(task_id):
    return db.session.execute(db.select(History.user_id).where(
        History.task_id == task_id, History.action == "approve")).scalars().all()


def _decide_as(app, username, task_id):
    """A racer calling the engine in its own app context and session."""
    def attempt():
        with app.app_context():
            try:
                user = db.session.execute(
                    db.select(User).where(User.username == username)).scalar_one()
                engine.decide(task_id, user, "approve", f"approved by {username}")
                db.session.commit()
                return "approved"
            except Conflict as exc:
                db.session.rollback()
                return f"conflict:{exc.reason}"
            finally:
                db.session.remove()
    return attempt


def test_two_approvers_racing_through_the_engine_approve_once(app, factory, users):
    for task_id in _finance_task_ids(factory, users, ROUNDS):
        outcomes = _race(_decide_as(app, "bob", task_id), _decide_as(app, "dave", task_id))
        assert sorted(outcomes) == ["approved", "conflict:done"]
        winner = ("bob", "dave")[outcomes.index("approved")]
        task = db.session.get(Task, task_id)
        assert (task.status, task.completed_by.username) == ("done", winner)
        assert task.comment == f"approved by {winner}"
        assert _approvals_of(task_id) == [task.completed_by_id]
        assert task.instance.status == "approved"
        db.session.commit()  # end our read transaction before the next race


def _api_approve(app, token, task_id):
    """A racer using the HTTP API through a test client of its own."""
    def attempt():
        response = app.test_client().post(
            f"/api/v1/tasks/{task_id}/approve", json={"action": "approve"},
            headers={"Authorization": f"Bearer {token}"})
        return response.status_code
    return attempt


def test_two_approvers_racing_through_the_api_approve_once(app, factory, users):
    bob, dave = factory.token(users["bob"]), factory.token(users["dave"])
    for task_id in _finance_task_ids(factory, users, ROUNDS):
        statuses = _race(_api_approve(app, bob, task_id), _api_approve(app, dave, task_id))
        assert sorted(statuses) == [200, 409]
        assert len(_approvals_of(task_id)) == 1
        db.session.commit()  # end our read transaction before the next race


def test_approving_twice_through_the_api_is_200_then_409(app, client, factory, users):
    task = factory.tasks(1, starter=users["admin"])[0]
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    body = {"action": "approve", "form": GOOD_FORM}
    first = client.post(f"/api/v1/tasks/{task.id}/approve", json=body, headers=headers)
    second = client.post(f"/api/v1/tasks/{task.id}/approve", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (200, 409)
    assert "already" in second.get_json()["error"]
    assert len(_approvals_of(task.id)) == 1


def _api_batch(app, token, node_id, task_ids):
    """A racer creating a batch of ``task_ids`` through the API."""
    def attempt():
        response = app.test_client().post(
            "/api/v1/batches", json={"node_id": node_id, "task_ids": task_ids, "action": "approve"},
            headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.get_json()
    return attempt


def test_two_batches_racing_for_the_same_tasks_approve_each_once(app, factory, users):
    bob, dave = factory.token(users["bob"]), factory.token(users["dave"])
    rounds, per_round = ROUNDS // 4, 4
    for _round in range(rounds):
        task_ids = _finance_task_ids(factory, users, per_round)
        node_id = db.session.get(Task, task_ids[0]).node_id
        db.session.commit()  # end our read transaction before the next race
        results = _race(_api_batch(app, bob, node_id, task_ids),
                        _api_batch(app, dave, node_id, task_ids))
        assert [status for status, _body in results] == [202, 202]
        batches = [body["batch"] for _status, body in results]
        # each task became a pending item of one batch; the other batch ignored it as locked
        assert sum(b["pending"] for b in batches) == per_round
        assert sum(b["ignored"] for b in batches) == per_round
        for batch in batches:
            runner.run_inline(batch["id"])
        for task_id in task_ids:
            assert len(_approvals_of(task_id)) == 1
        db.session.commit()  # end our read transaction before the next race
    successes = db.session.execute(db.select(db.func.count(BatchItem.id)).where(
        BatchItem.status == "success")).scalar()
    assert successes == rounds * per_round
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 2 * rounds


SPLIT = process_xml("split", (
    user_task("first", "alice") + gateway("parallelGateway", "fork")
    + user_task("left", "bob") + user_task("right", "carol")
    + gateway("parallelGateway", "join") + user_task("after", "alice") + end("done")
    + flow("f0", "start", "first") + flow("f1", "first", "fork")
    + flow("f2", "fork", "left") + flow("f3", "fork", "right")
    + flow("f4", "left", "join") + flow("f5", "right", "join") + flow("f6", "join", "after")
    + flow("f7", "after", "done")))


def _branch_task_ids(users, count):
    """(left task id, right task id) of ``count`` instances of SPLIT, each past its first task."""
    load_process_file("split.bpmn", SPLIT)
    db.session.commit()
    pairs = []
    for i in range(count):
        instance = engine.start_instance("split", f"Split {i}", {}, users["admin"])
        engine.decide(instance.tasks[0].id, users["alice"], "approve")
        db.session.flush()
        pending = {t.node.key: t.id for t in instance.tasks if t.status == "pending"}
        assert sorted(pending) == ["left", "right"]
        pairs.append((pending["left"], pending["right"]))
    db.session.commit()  # the racers must find no open transaction of ours
    return pairs


def test_the_two_branches_of_a_parallel_split_approved_at_once_join_once(app, users):
    for left_id, right_id in _branch_task_ids(users, ROUNDS):
        outcomes = _race(_decide_as(app, "bob", left_id), _decide_as(app, "carol", right_id))
        assert outcomes == ["approved", "approved"]
        db.session.expire_all()
        left, right = db.session.get(Task, left_id), db.session.get(Task, right_id)
        assert [(t.status, t.completed_by.username) for t in (left, right)] == [
            ("done", "bob"), ("done", "carol")]
        assert _approvals_of(left_id) == [users["bob"].id]
        assert _approvals_of(right_id) == [users["carol"].id]
        instance = db.session.get(Instance, left.instance_id)
        rows = [(t.node.key, t.status) for t in instance.tasks]
        assert sorted(rows) == [("after", "pending"), ("first", "done"), ("left", "done"),
                                ("right", "done")], rows
        # The engine's state agrees: the join fired once and only `after` waits, as that row.
        workflow = runtime.restore(instance.process.bpmn, instance.state)
        ready = runtime.ready_user_tasks(workflow)
        assert [runtime.node_key(task) for task in ready] == ["after"]
        after = next(t for t in instance.tasks if t.node.key == "after")
        assert after.engine_task_id == str(ready[0].id)
        assert instance.status == "running"
        db.session.commit()  # end our read transaction before the next race
