"""The approval engine: validation, approve/reject, locks, countersign, recall, suspension."""
import pytest

from support import GOOD_FORM
from portal.errors import Conflict, NotFound, UserError, ValidationFailed
from portal.infra.extensions import db
from portal.models import History, Task
from portal.workflow import engine, visibility


def test_approve_moves_instance_to_next_node_and_records_history(factory):
    users = factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    engine.decide(task.id, users["alice"], "approve", "ok", GOOD_FORM)
    db.session.commit()
    instance = task.instance
    assert task.status == "done" and task.outcome == "approve"
    assert [t.status for t in instance.tasks] == ["done", "pending"]
    assert instance.tasks[1].assignee_role == "finance"
    actions = [h.action for h in db.session.execute(db.select(History)).scalars()]
    assert actions == ["start", "approve"]
    engine.decide(instance.tasks[1].id, users["bob"], "approve", "", {})
    db.session.commit()
    assert instance.status == "approved" and instance.finished_at is not None


def test_validation_names_each_field(factory):
    users = factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    with pytest.raises(ValidationFailed) as caught:
        engine.decide(task.id, users["alice"], "approve", "x" * 2001,
                      {"amount": -1, "category": "Hotel", "paid_on": "31/31/2020",
                       "urgent": "maybe", "note": "n" * 201})
    assert set(caught.value.errors) == {"comment", "amount", "category", "paid_on", "urgent", "note"}
    with pytest.raises(ValidationFailed) as caught:
        engine.decide(task.id, users["alice"], "approve", "", {})
    assert set(caught.value.errors) == {"amount", "category"}


def test_reject_ends_instance_without_required_fields(factory):
    users = factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    engine.decide(task.id, users["alice"], "reject", "no", {})
    db.session.commit()
    assert task.instance.status == "rejected"


def test_cannot_approve_twice_or_others_task(factory):
    users = factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    with pytest.raises(NotFound):
        engine.decide(task.id, users["carol"], "approve", "", GOOD_FORM)
    engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    with pytest.raises(Conflict) as caught:
        engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    assert caught.value.reason == "done"


def test_lock_blocks_other_role_holders(factory):
    users = factory.standard(tasks=1)
    dave = factory.user("dave", workflow_roles="finance")
    task = db.session.execute(db.select(Task)).scalar_one()
    engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    finance_task = task.instance.tasks[1]
    engine.take_task(finance_task.id, users["bob"])
    db.session.commit()
    with pytest.raises(Conflict) as caught:
        engine.decide(finance_task.id, dave, "approve", "", {})
    assert caught.value.reason == "locked"
    engine.decide(finance_task.id, users["bob"], "approve", "", {})
    db.session.commit()


def test_countersign_blocks_until_signed(factory):
    users = factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    engine.countersign(task.id, users["alice"], "carol", "please check")
    db.session.commit()
    with pytest.raises(Conflict) as caught:
        engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    assert caught.value.reason == "countersigning"
    assert visibility.can_view_task(users["carol"], task)
    engine.sign(task.id, users["carol"], "fine")
    db.session.commit()
    engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    assert [h.action for h in db.session.execute(db.select(History).order_by(History.id)).scalars()] \
        == ["start", "countersign", "sign", "approve"]


def test_recall_only_while_next_task_untouched(factory):
    users = factory.standard(tasks=2)
    first, second = db.session.execute(db.select(Task).order_by(Task.id)).scalars().all()
    for task in (first, second):
        engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    new_task = engine.recall(first.id, users["alice"])
    db.session.commit()
    assert new_task.status == "pending" and new_task.assignee_user_id == users["alice"].id
    assert first.instance.tasks[1].status == "recalled"
    # second instance: the finance task was opened by bob, so recall is refused
    engine.take_task(second.instance.tasks[1].id, users["bob"])
    db.session.commit()
    with pytest.raises(Conflict):
        engine.recall(second.id, users["alice"])
    with pytest.raises(NotFound):
        engine.recall(second.id, users["carol"])


def test_suspended_instance_refuses_approval_and_only_admin_suspends(factory):
    users = factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    with pytest.raises(NotFound):
        engine.set_suspended(task.instance_id, users["alice"], True)
    engine.set_suspended(task.instance_id, users["admin"], True)
    db.session.commit()
    with pytest.raises(Conflict) as caught:
        engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    assert caught.value.reason == "suspended"
    engine.set_suspended(task.instance_id, users["admin"], False)
    engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()


def test_disabled_user_gets_user_error(factory):
    users = factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    users["alice"].disabled = True
    db.session.commit()
    with pytest.raises(UserError):
        engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)


def test_definition_versions_only_when_changed(factory):
    from support import EXPENSE
    from portal.workflow.process_files import load_definition
    first = factory.process()
    same, created = load_definition(EXPENSE)
    assert not created and same.id == first.id
    changed = dict(EXPENSE, name="Expense claim v2")
    second, created = load_definition(changed)
    assert created and second.version == 2
    with pytest.raises(ValidationFailed) as caught:
        load_definition({"key": "x", "name": "X", "nodes": [{"key": "a", "assignee": "nobody"}]})
    assert "nodes[0].assignee" in caught.value.errors


def test_definition_field_keys_may_not_shadow_the_task_form(factory):
    from portal.workflow.json_definitions.checks import check_definition
    problems = check_definition({"key": "x", "name": "X", "nodes": [
        {"key": "a", "assignee": "user:alice",
         "fields": [{"key": "comment", "type": "text"}, {"key": "ok", "type": "text"}]}]})
    assert problems == {"nodes[0].fields[0]": "the key 'comment' is reserved"}


def test_text_fields_keep_a_minimum_length(app):
    from portal.workflow.forms import validate_form
    fields = [{"key": "reason", "label": "Reason", "type": "text", "min_length": 5}]
    with app.test_request_context():
        assert validate_form(fields, {"reason": "  ok  "})[1] == {
            "reason": "At least 5 characters."}
        assert validate_form(fields, {"reason": "because"}) == ({"reason": "because"}, {})
