"""会签 (multi-instance countersign) decided by batches on real worker processes.

Every batch below runs in ``flask --app app worker`` processes, and RQ forks a fresh work-horse for each
lane job: the signers' tasks are created in one process (the lane that approved finance) and decided in
others. Whichever process decides the last signer's task, the instance must move on past the countersign,
for a parallel and a sequential countersign, into an end event and into a gateway (a signer's reject there
ends the claim as rejected).

The process is tests/bpmn_files/countersign_review.bpmn: department review -> exclusive gateway on the
amount -> director (big amounts) -> finance (candidate users; a reject loops back to the department) ->
countersign by every name in ``signers`` -> end.
"""
import pytest

from bpmn_support import countersign_review
from support import assert_counters_match_items, snapshot, wait_for
from portal.batches import dispatch
from portal.infra.extensions import db
from portal.models import Batch, Instance, Task
from portal.workflow.engine import repair
from portal.workflow.engine import start_instance
from portal.workflow.process_files import load_process_file

SIGNERS = ["alice", "bob"]


def people(factory):
    return {name: factory.user(name, workflow_roles=roles) for name, roles in (
        ("carol", ""), ("dave", "directors"), ("erin", ""), ("frank", ""),
        ("alice", ""), ("bob", ""), ("admin", ""))}


def pending_at(instance_ids, key, user=None):
    """The pending tasks at node ``key`` of these instances (assigned to ``user`` when given), by instance."""
    db.session.rollback()
    rows = db.session.execute(db.select(Task).where(
        Task.instance_id.in_(instance_ids), Task.status == "pending")).scalars().all()
    found = [t for t in rows if t.node.key == key and (user is None or t.assignee_user_id == user.id)]
    return sorted(found, key=lambda t: t.instance_id)


def _finished(batch_id):
    batch = snapshot(Batch, batch_id)
    return batch.status == "finished" and batch


def run_batch(factory, user, tasks, action="approve", form=None):
    """A batch of ``tasks`` decided by ``user`` in the workers; waits for its end, asserts every item
    succeeded."""
    assert tasks
    batch = factory.batch(user, tasks, action=action, form=form or {}, comment="bulk", concurrency=3)
    dispatch.start(batch)
    done = wait_for(lambda: _finished(batch.id), timeout=120, message=f"batch {batch.id} finished")
    assert (done.success, done.failed, done.ignored) == (len(tasks), 0, 0)
    assert_counters_match_items(batch.id)
    db.session.rollback()
    return done


def instances(ids):
    db.session.rollback()
    rows = {i.id: i for i in db.session.execute(db.select(Instance).where(Instance.id.in_(ids))).scalars()}
    return [rows[i] for i in ids]


def claims_at_the_countersign(factory, who, count=8):
    """Start ``count`` claims and take them, batch by batch in the workers, up to the countersign; two of
    them are rejected at finance and wait at the department again. Returns (ids at the countersign, ids
    sent back)."""
    ids = []
    for i in range(count):
        ids.append(start_instance("countersign_review", f"Claim {i}", {"signers": SIGNERS}, who["admin"]).id)
    db.session.commit()
    reviews = pending_at(ids, "dept_review")
    run_batch(factory, who["carol"], reviews[::2], form={"amount": 20000})
    run_batch(factory, who["carol"], reviews[1::2], form={"amount": 50})
    run_batch(factory, who["dave"], pending_at(ids, "director"))
    checks = pending_at(ids, "finance")
    assert len(checks) == count
    sent_back = [checks[0].instance_id, checks[1].instance_id]  # one big claim, one small
    run_batch(factory, who["erin"], checks[:2], action="reject")
    run_batch(factory, who["erin"], checks[2:])
    assert [t.instance_id for t in pending_at(ids, "dept_review")] == sent_back
    return [i for i in ids if i not in sent_back], sent_back


@pytest.mark.parametrize("after", ["end", "gateway"])
@pytest.mark.parametrize("sequential", [False, True], ids=["parallel", "sequential"])
def test_a_countersign_decided_by_batches_in_workers_moves_on(app, factory, workers, sequential, after):
    load_process_file("countersign_review.bpmn", countersign_review(sequential, after))
    db.session.commit()
    who = people(factory)
    workers.start(2, extra_env={"BATCH_CONCURRENCY": "3"})
    signing, sent_back = claims_at_the_countersign(factory, who)

    alice_tasks = pending_at(signing, "countersign", who["alice"])
    assert [t.instance_id for t in alice_tasks] == signing
    run_batch(factory, who["alice"], alice_tasks)
    # Alice has signed; each claim now waits for bob alone (a sequential countersign asks him only now).
    bob_tasks = pending_at(signing, "countersign", who["bob"])
    assert [t.instance_id for t in bob_tasks] == signing
    assert pending_at(signing, "countersign", who["alice"]) == []
    if after == "gateway":  # bob refuses one claim; the gateway after the countersign ends it as rejected
        run_batch(factory, who["bob"], bob_tasks[:1], action="reject")
        bob_tasks = bob_tasks[1:]
    run_batch(factory, who["bob"], bob_tasks)

    ended = instances(signing)
    expected = ["rejected"] + ["approved"] * (len(signing) - 1) if after == "gateway" else \
        ["approved"] * len(signing)
    assert [i.status for i in ended] == expected
    assert all(i.finished_at is not None for i in ended)
    assert pending_at(signing, "countersign") == [] and not any(
        pending_at(signing, key) for key in ("dept_review", "director", "finance"))
    # The two claims finance sent back wait at the department, untouched by the countersigns.
    assert [i.status for i in instances(sent_back)] == ["running", "running"]
    assert [t.instance_id for t in pending_at(sent_back, "dept_review")] == sent_back
    assert repair.stuck_instance_ids() == []  # recovery's invariant holds without it
