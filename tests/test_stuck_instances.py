"""The invariant recovery keeps: no instance is ``running`` while it waits on nothing.

Stuck instances are made by hand: a 会签 decided the way the engine decided it before its specs were finished
up front (the signers' completion never reached the countersign: the instance waited for nothing), and a
task row withdrawn while the engine still has the task ready. Recovery finds them, says so in the log,
repairs them from their engine state (to their end, or to their missing tasks) and counts them; what it
cannot repair it leaves as it is, reports and counts again on every pass.
"""
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bpmn_support import countersign_review
from portal.batches import recovery
from portal.infra.extensions import db
from portal.jobs import periodic
from portal.models import Instance, Task
from portal.workflow import engine
from portal.workflow.engine import repair, runtime
from portal.workflow.process_files import load_process_file


def _counted(client):
    """{outcome: portal_stuck_instances_total} of one scrape of /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {sample.labels["outcome"]: sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples if sample.name == "portal_stuck_instances_total"}


def _moved(before, after, outcome):
    return after.get(outcome, 0) - before.get(outcome, 0)


@pytest.fixture
def who(factory):
    return {name: factory.user(name, workflow_roles=roles) for name, roles in (
        ("carol", ""), ("dave", "directors"), ("erin", ""), ("alice", ""), ("bob", ""))}


def _pending(instance_id):
    db.session.expire_all()
    return sorted((t.node.key, t.assignee_user.username if t.assignee_user else None)
                  for t in db.session.get(Instance, instance_id).tasks if t.status == "pending")


def _decide(instance_id, key, user, action="approve", form=None):
    task = next(t for t in db.session.get(Instance, instance_id).tasks
                if t.status == "pending" and t.node.key == key
                and t.assignee_user_id in (None, user.id))
    engine.decide(task.id, user, action, form=form or {})
    db.session.commit()


def _at_the_countersign(who, sequential=False, after="end"):
    load_process_file("countersign_review.bpmn", countersign_review(sequential, after))
    db.session.commit()
    instance_id = engine.start_instance("countersign_review", "Claim", {"signers": ["alice", "bob"]},
                                        who["carol"]).id
    db.session.commit()
    _decide(instance_id, "dept_review", who["carol"], form={"amount": 50})
    _decide(instance_id, "finance", who["erin"])
    return instance_id


def _old_settle(_process_spec, task_spec):
    """What ``runtime.specs`` did to a multi-instance task before its specs were finished up front."""
    if getattr(task_spec, "data_output", None) is not None:
        runtime._name_collection(task_spec)


def as_before_the_fix(step):
    """Run ``step`` (a decision) as a worker did before the fix: on a spec parsed afresh, as in another
    process, its multi-instance tasks left unfinished."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "_settle_loop", _old_settle)
        runtime.specs.cache_clear()
        try:
            step()
        finally:
            runtime.specs.cache_clear()


def test_a_parallel_countersign_left_waiting_for_nothing_is_repaired_to_its_end(app, client, who, caplog):
    instance_id = _at_the_countersign(who)
    assert _pending(instance_id) == [("countersign", "alice"), ("countersign", "bob")]
    as_before_the_fix(lambda: _decide(instance_id, "countersign", who["alice"]))
    as_before_the_fix(lambda: _decide(instance_id, "countersign", who["bob"]))
    stuck = db.session.get(Instance, instance_id)
    assert (stuck.status, stuck.finished_at, _pending(instance_id)) == ("running", None, [])

    before = _counted(client)
    with caplog.at_level(logging.WARNING, logger="portal.batches.recovery"):
        result = recovery.recover()
    assert (result["stuck_repaired"], result["stuck_unrepaired"]) == (1, 0)
    assert f"instance {instance_id} was running and waited on nothing; repaired: now approved" in caplog.text
    db.session.expire_all()
    repaired = db.session.get(Instance, instance_id)
    assert repaired.status == "approved" and repaired.finished_at is not None
    assert repaired.data["signers"] == ["alice", "bob"]
    assert _moved(before, _counted(client), "repaired") == 1

    again = recovery.recover()  # nothing left: a second pass finds and counts nothing
    assert (again["stuck_repaired"], again["stuck_unrepaired"]) == (0, 0)
    # A pass working from a list read before the repair re-checks under the lock and changes nothing.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(repair, "stuck_instance_ids", lambda limit=None: [instance_id])
        assert recovery.repair_stuck_instances() == {"repaired": 0, "unrepaired": 0}
    assert _moved(before, _counted(client), "repaired") == 1
    assert db.session.get(Instance, instance_id).status == "approved"


def test_a_sequential_countersign_that_never_asked_its_next_signer_gets_the_task(app, who):
    instance_id = _at_the_countersign(who, sequential=True, after="gateway")
    assert _pending(instance_id) == [("countersign", "alice")]
    as_before_the_fix(lambda: _decide(instance_id, "countersign", who["alice"]))
    assert _pending(instance_id) == [] and db.session.get(Instance, instance_id).status == "running"

    assert periodic.recover_batches()["stuck_repaired"] == 1  # the scheduler's recovery job
    assert _pending(instance_id) == [("countersign", "bob")]
    # bob's task is an ordinary task: his reject goes through the gateway to the refused end
    _decide(instance_id, "countersign", who["bob"], "reject")
    db.session.expire_all()
    assert db.session.get(Instance, instance_id).status == "rejected"


def test_a_withdrawn_task_the_engine_still_has_ready_is_opened_again(app, who):
    instance_id = _at_the_countersign(who)
    rows = [t for t in db.session.get(Instance, instance_id).tasks if t.status == "pending"]
    engine_ids = sorted(t.engine_task_id for t in rows)
    for row in rows:
        row.status = "cancelled"
    db.session.commit()

    assert recovery.recover()["stuck_repaired"] == 1
    assert _pending(instance_id) == [("countersign", "alice"), ("countersign", "bob")]
    reopened = db.session.execute(db.select(Task).where(Task.instance_id == instance_id,
                                                        Task.status == "pending")).scalars().all()
    assert sorted(t.engine_task_id for t in reopened) == engine_ids
    _decide(instance_id, "countersign", who["bob"])
    _decide(instance_id, "countersign", who["alice"])
    db.session.expire_all()
    assert db.session.get(Instance, instance_id).status == "approved"


def test_an_instance_that_cannot_be_repaired_is_left_reported_and_counted_on_every_pass(app, client, who,
                                                                                        caplog):
    waiting = _at_the_countersign(who)
    broken = _at_the_countersign(who)
    instance = db.session.get(Instance, broken)
    state = instance.state
    instance.state = '{"not": "an engine state"}'
    for row in instance.tasks:
        if row.status == "pending":
            row.status = "cancelled"
    db.session.commit()

    before = _counted(client)
    with caplog.at_level(logging.ERROR, logger="portal.batches.recovery"):
        first = recovery.recover()
        second = recovery.recover()
    assert (first["stuck_repaired"], first["stuck_unrepaired"]) == (0, 1)
    assert (second["stuck_repaired"], second["stuck_unrepaired"]) == (0, 1)
    assert caplog.text.count(f"instance {broken} is running and waits on nothing; not repaired") == 2
    assert _moved(before, _counted(client), "unrepaired") == 2
    db.session.expire_all()
    left = db.session.get(Instance, broken)
    assert (left.status, left.state, _pending(broken)) == ("running", '{"not": "an engine state"}', [])
    assert state != left.state
    # The instance that waits on its signers is not touched.
    assert _pending(waiting) == [("countersign", "alice"), ("countersign", "bob")]


def test_instances_that_wait_or_ended_are_not_stuck(app, who):
    waiting = _at_the_countersign(who)
    ended = _at_the_countersign(who)
    _decide(ended, "countersign", who["alice"])
    _decide(ended, "countersign", who["bob"])
    assert db.session.get(Instance, ended).status == "approved"
    assert repair.stuck_instance_ids() == []
    db.session.rollback()
    assert recovery.recover()["stuck_repaired"] == 0
    assert _pending(waiting) == [("countersign", "alice"), ("countersign", "bob")]


def test_a_pass_repairs_at_most_its_share_and_the_next_pass_goes_on(app, who, monkeypatch):
    """However many instances a defect left stuck, one recovery pass takes a bounded number of them
    (each is an engine run under its instance lock), and the next pass takes the rest."""
    stuck = [_at_the_countersign(who) for _ in range(3)]
    for instance_id in stuck:
        for row in db.session.get(Instance, instance_id).tasks:
            if row.status == "pending":
                row.status = "cancelled"
    db.session.commit()
    monkeypatch.setattr(recovery, "STUCK_INSTANCES_PER_PASS", 2)

    assert recovery.recover()["stuck_repaired"] == 2
    assert recovery.recover()["stuck_repaired"] == 1
    assert recovery.recover()["stuck_repaired"] == 0
    for instance_id in stuck:
        assert _pending(instance_id) == [("countersign", "alice"), ("countersign", "bob")]
