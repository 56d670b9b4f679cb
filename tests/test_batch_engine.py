"""The batch engine in one process: creation, eligibility, counters, control."""
import pytest

from support import GOOD_FORM, assert_counters_match_items
from portal.batches import control, creation, dispatch, runner
from portal.errors import ValidationFailed
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, History, Task
from portal.workflow import engine


def _node(task):
    return task.node


def test_create_validates_shared_form_before_writing(factory):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    with pytest.raises(ValidationFailed) as caught:
        creation.create_batch(users["alice"], tasks[0].node, task_ids=[t.id for t in tasks],
                              action="approve", form={"amount": "abc"})
    # The category is left to each task (checked per item when it runs): not the form's fault.
    assert set(caught.value.errors) == {"amount"}
    db.session.rollback()
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 0


def test_ineligible_tasks_become_ignored_items_with_reasons(factory):
    users = factory.standard()
    tasks = factory.tasks(6, starter=users["admin"])
    engine.decide(tasks[0].id, users["alice"], "approve", "", GOOD_FORM)       # done
    engine.set_suspended(tasks[1].instance_id, users["admin"], True)           # suspended
    engine.countersign(tasks[2].id, users["alice"], "carol")                    # countersigning
    db.session.commit()
    ids = [t.id for t in tasks] + [999999, tasks[5].id]
    node = tasks[0].node
    assert creation.preview(users["alice"], node, ids) == {
        "total": 8, "eligible": 3,
        "reasons": {"done": 1, "suspended": 1, "countersigning": 1, "unavailable": 1,
                    "duplicate": 1}}
    batch = creation.create_batch(users["alice"], node, task_ids=ids, action="approve",
                                  form=GOOD_FORM)
    db.session.commit()
    assert batch.number.startswith("B") and batch.number.endswith(f"{batch.id:06d}")
    assert (batch.total, batch.pending, batch.ignored) == (8, 3, 5)
    locked = db.session.execute(db.select(Task).where(Task.lock_batch_id == batch.id)).scalars().all()
    assert sorted(t.id for t in locked) == sorted(t.id for t in tasks[3:])
    with pytest.raises(Exception):
        engine.decide(tasks[3].id, users["alice"], "approve", "", GOOD_FORM)  # locked by the batch
    db.session.rollback()
    # someone else's pending tasks are "unavailable": the same as missing ones
    other = creation.preview(users["carol"], node, [tasks[4].id])
    assert other["reasons"] == {"unavailable": 1}
    assert_counters_match_items(batch.id)


def test_run_inline_approves_each_task_once_and_finishes(factory):
    users = factory.standard()
    tasks = factory.tasks(12, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks, comment="batch ok", concurrency=3)
    assert runner.run_inline(batch.id) == 12
    db.session.refresh(batch)
    assert (batch.status, batch.success, batch.pending, batch.running) == ("finished", 12, 0, 0)
    assert batch.finished_at is not None and not batch.with_errors
    approvals = db.session.execute(db.select(db.func.count(History.id)).where(
        History.action == "approve", History.batch_item_id.is_not(None))).scalar()
    assert approvals == 12
    assert db.session.execute(db.select(Task).where(Task.lock_batch_id.is_not(None))).first() is None
    assert_counters_match_items(batch.id)
    # running the same batch again does nothing
    assert runner.run_inline(batch.id) == 0


def test_item_run_twice_takes_effect_once(factory):
    users = factory.standard()
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    claim = runner.claim_next(batch.id)
    assert runner.run_claimed_item(claim) is None
    assert runner.run_claimed_item(claim) is None  # a duplicate delivery of the same claim
    approvals = db.session.execute(db.select(db.func.count(History.id)).where(
        History.action == "approve")).scalar()
    assert approvals == 1
    assert_counters_match_items(batch.id)


def test_cap_holds_in_the_database(factory):
    users = factory.standard()
    tasks = factory.tasks(10, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks, concurrency=2)
    claims = [runner.claim_next(batch.id) for _ in range(5)]
    assert [c is not None for c in claims] == [True, True, False, False, False]
    db.session.refresh(batch)
    assert batch.running == 2 and batch.status == "running"
    assert_counters_match_items(batch.id)


def test_failed_and_ignored_items_are_classified_and_unlock_tasks(factory):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    rows = {tasks[0].id: {"decision": {"action": "approve", "form": {"amount": "x"}}},
            tasks[1].id: {"decision": {"action": "approve", "form": GOOD_FORM}},
            tasks[2].id: {"decision": {"action": "approve", "form": GOOD_FORM}}}
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=list(rows),
                                  mode="single", rows=rows)
    db.session.commit()
    engine.set_suspended(tasks[1].instance_id, users["admin"], True)
    users["alice"].disabled = False
    db.session.commit()
    runner.run_inline(batch.id)
    items = {i.task_id: i for i in db.session.execute(db.select(BatchItem)).scalars()}
    assert items[tasks[0].id].status == "failed" and items[tasks[0].id].error_kind == "validation"
    assert "Amount: Enter a number; Category: This field is required" == items[tasks[0].id].error
    assert items[tasks[1].id].status == "ignored" and items[tasks[1].id].error_kind == "suspended"
    assert items[tasks[2].id].status == "success"
    db.session.refresh(batch)
    assert batch.with_errors
    assert db.session.execute(db.select(Task).where(Task.lock_batch_id.is_not(None))).first() is None
    assert_counters_match_items(batch.id)


def test_disabled_creator_fails_items_with_user_error(factory):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]))
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    kinds = {i.error_kind for i in db.session.execute(db.select(BatchItem)).scalars()}
    assert kinds == {"user"}
    assert_counters_match_items(batch.id)


def test_pause_resume_cancel(factory):
    users = factory.standard()
    tasks = factory.tasks(6, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    control.pause(batch, users["alice"])
    db.session.commit()
    assert runner.run_inline(batch.id) == 0
    control.resume(batch, users["alice"])
    db.session.commit()
    claim = runner.claim_next(batch.id)
    runner.run_claimed_item(claim, claim_next_item=False)
    control.cancel(batch, users["alice"])
    db.session.commit()
    db.session.refresh(batch)
    assert (batch.status, batch.success, batch.cancelled) == ("cancelled", 1, 5)
    assert db.session.execute(db.select(Task).where(Task.lock_batch_id.is_not(None))).first() is None
    assert_counters_match_items(batch.id)


def test_retry_failed_items_up_to_limit(factory, app):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]))
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    limit = app.config["BATCH_RETRY_LIMIT"]
    for _ in range(limit):
        _b, retried, _at_limit, _needs_correction = control.retry(batch, users["sam"])
        db.session.commit()
        assert retried == 2
        runner.run_inline(batch.id)
    _b, retried, at_limit, _needs_correction = control.retry(batch, users["sam"])
    assert (retried, at_limit) == (0, 2)
    users["alice"].disabled = False
    db.session.commit()
    item = db.session.execute(db.select(BatchItem)).scalars().first()
    assert item.retry_count == limit and item.retried_by_id == users["sam"].id
    assert_counters_match_items(batch.id)


def test_lanes_for_a_batch_follow_its_concurrency_and_runnable_work(factory):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(6, starter=users["admin"]), concurrency=4)
    small = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]), concurrency=4)
    if db.engine.dialect.name == "sqlite":
        # lanes take turns per database there: one per batch does all it can get
        assert (dispatch.lanes_for(batch), dispatch.lanes_for(small)) == (1, 1)
    else:
        assert (dispatch.lanes_for(batch), dispatch.lanes_for(small)) == (4, 2)
    control.pause(batch, users["alice"])
    runner.run_inline(small.id)
    db.session.refresh(small)
    assert (dispatch.lanes_for(batch), dispatch.lanes_for(small)) == (0, 0)


def test_a_lane_goes_on_while_nothing_waits_and_ends_when_something_does(factory, app):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(6, starter=users["admin"]), concurrency=2)
    asked = []

    def others_waiting():
        asked.append(True)
        return len(asked) >= 3   # another job shows up after the third slice

    # Slices of no time at all: one item each, then the lane asks.
    result = runner.run_lane(batch.id, slice_seconds=0, others_waiting=others_waiting)
    assert (result.processed, len(asked), result.more) == (3, 3, True)
    result = runner.run_lane(batch.id, slice_seconds=0)   # nobody to ask: one slice
    assert (result.processed, result.more) == (1, True)
    result = runner.run_lane(batch.id, slice_seconds=0, others_waiting=lambda: False)
    assert (result.processed, result.more) == (2, False)  # to the end: nothing waited
    app.config["BATCH_LANE_MAX_SECONDS"], limit = 0, app.config["BATCH_LANE_MAX_SECONDS"]
    try:
        other = factory.batch(users["alice"], factory.tasks(3, starter=users["admin"]), concurrency=2)
        result = runner.run_lane(other.id, slice_seconds=0, others_waiting=lambda: False)
        assert (result.processed, result.more) == (1, True)  # its time is up after a slice
    finally:
        app.config["BATCH_LANE_MAX_SECONDS"] = limit


def test_create_batch_reports_every_problem_at_once(factory):
    users = factory.standard()
    node = factory.tasks(1, starter=users["admin"])[0].node
    with pytest.raises(ValidationFailed) as caught:
        creation.create_batch(users["alice"], node, task_ids=[], action="approve",
                              form={"amount": "abc"}, concurrency="99")
    assert set(caught.value.errors) == {"concurrency", "amount", "task_ids"}
    db.session.rollback()
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 0


def test_the_lane_that_ends_a_batch_refreshes_its_and_its_sources_error_workbooks(
        factory, monkeypatch):
    from portal.jobs import batch_jobs
    users = factory.standard()
    source = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    correction = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]),
                               source_batch_id=source.id)
    queued = []
    monkeypatch.setattr(dispatch, "enqueue", lambda job, *args, **kw: queued.append(
        (job, args)))
    batch_jobs.run_batch_lane(correction.id)
    assert db.session.get(Batch, correction.id).status == "finished"
    assert queued == [(dispatch.ERROR_FILE, (correction.id,)),
                      (dispatch.ERROR_FILE, (source.id,))]


def test_a_finished_batch_has_a_finished_entry_in_its_audit_log(client, factory):
    from support import login
    from portal.models import BatchEvent
    users = factory.standard(tasks=2)
    tasks = db.session.execute(db.select(Task).order_by(Task.id)).scalars().all()
    batch = factory.batch(users["alice"], tasks)
    runner.run_inline(batch.id)
    events = db.session.execute(db.select(BatchEvent.action, BatchEvent.detail)
                                .where(BatchEvent.batch_id == batch.id).order_by(BatchEvent.id)).all()
    assert [action for action, _detail in events] == ["created", "finished"]
    assert events[1][1] == {"success": 2, "failed": 0, "ignored": 0, "cancelled": 0}
    login(client, "alice")
    page = client.get(f"/batches/{batch.id}").get_data(as_text=True)
    assert "Finished" in page and "2 succeeded, 0 failed, 0 ignored" in page
