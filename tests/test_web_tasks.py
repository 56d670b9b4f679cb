"""My tasks, the task page (every field type, approve/reject with field errors,
countersign and sign, recall) and the instance page."""
import re

from support import csrf_token, login
from portal.infra.extensions import db
from portal.models import Countersign, History, Instance, Task
from portal.workflow import engine


def _first_task():
    return db.session.execute(db.select(Task).order_by(Task.id)).scalars().first()


def _approve_form(client, task_id, **fields):
    data = {"csrf_token": csrf_token(client, f"/tasks/{task_id}"), "action": "approve",
            "comment": "", "amount": "12.5", "category": "Travel"}
    data.update(fields)
    return data


def test_my_tasks_lists_only_own_tasks_with_counts(client, factory):
    users = factory.standard(tasks=3)
    factory.process({"key": "leave", "name": "Leave request", "nodes": [
        {"key": "lead", "name": "Team lead", "assignee": "user:carol", "fields": []}]})
    factory.tasks(2, process_key="leave", starter=users["admin"], title="Leave")
    login(client, "alice")
    page = client.get("/").get_data(as_text=True)
    assert page.count('data-task-id="') == 3
    assert "Claim 0" in page and "Leave 0" not in page
    manager = _first_task().node
    counts = re.findall(r'data-node-id="(\d+)".*?data-count>(\d+)<', page, re.S)
    assert counts == [(str(manager.id), "3")]

    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "carol")
    page = client.get("/").get_data(as_text=True)
    assert page.count('data-task-id="') == 2 and "Claim 0" not in page


def test_my_tasks_filters_by_process_node_and_title(client, factory):
    factory.standard(tasks=3)
    factory.tasks(2, title="Hotel")
    login(client, "alice")
    node_id = _first_task().node_id
    page = client.get(f"/?q=hot&node_id={node_id}&process=expense").get_data(as_text=True)
    assert page.count('data-task-id="') == 2 and "Claim" not in page
    assert client.get("/?process=leave").get_data(as_text=True).count('data-task-id="') == 0


def test_batch_form_appears_when_a_node_is_selected(client, factory):
    factory.standard(tasks=2)
    login(client, "alice")
    assert 'name="task_ids"' not in client.get("/").get_data(as_text=True)
    node_id = _first_task().node_id
    page = client.get(f"/?node_id={node_id}&q=Claim").get_data(as_text=True)
    form = re.search(r'<form method="get" action="/batches/new".*?</form>', page, re.S).group(0)
    assert form.count('name="task_ids"') == 2
    assert f'name="node_id" value="{node_id}"' in form
    assert 'name="q" value="Claim"' in form
    assert re.search(r'<button[^>]*type="submit"[^>]*>Batch approve selected', form)
    assert re.search(r'<button[^>]*name="all" value="1"[^>]*>Batch approve all matching', form)


def test_my_tasks_paginates_by_fifty(client, factory):
    factory.standard(tasks=55)
    login(client, "alice")
    first = client.get("/").get_data(as_text=True)
    second = client.get("/?page=2").get_data(as_text=True)
    assert first.count('data-task-id="') == 50 and second.count('data-task-id="') == 5
    assert "?page=2" in first


def test_my_tasks_shows_locked_suspended_and_countersigning_badges(client, factory):
    users = factory.standard()
    bob_task, suspended_task, countersigned_task = factory.tasks(3)
    for task in (bob_task, suspended_task, countersigned_task):
        engine.decide(task.id, users["alice"], "approve", "", {"amount": 1, "category": "Meals"})
    db.session.commit()
    finance = [t.instance.tasks[-1] for t in (bob_task, suspended_task, countersigned_task)]
    engine.take_task(finance[0].id, users["bob"])
    engine.set_suspended(finance[1].instance_id, users["admin"], True)
    engine.countersign(finance[2].id, users["bob"], "carol", "please check")
    db.session.commit()
    factory.user("dave", workflow_roles="finance")
    login(client, "dave")
    page = client.get("/").get_data(as_text=True)
    rows = dict(re.findall(r'data-task-id="(\d+)">(.*?)</tr>', page, re.S))
    assert ">Locked<" in rows[str(finance[0].id)]
    assert ">Suspended<" in rows[str(finance[1].id)]
    assert ">Countersigning<" in rows[str(finance[2].id)]


def test_task_page_renders_each_field_type(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert re.search(r'<input[^>]*type="number"[^>]*name="amount"|<input[^>]*name="amount"[^>]*type="number"', page)
    amount = re.search(r'<input[^>]*name="amount"[^>]*>', page).group(0)
    assert 'min="0"' in amount and "required" in amount
    category = re.search(r'<select[^>]*name="category".*?</select>', page, re.S).group(0)
    assert '<option value="Travel">' in category and '<option value="Meals">' in category
    assert re.search(r'<input[^>]*name="paid_on"[^>]*type="date"|<input[^>]*type="date"[^>]*name="paid_on"', page)
    assert re.search(r'<input[^>]*name="urgent"[^>]*type="checkbox"|<input[^>]*type="checkbox"[^>]*name="urgent"', page)
    note = re.search(r'<input[^>]*name="note"[^>]*>', page).group(0)
    assert 'maxlength="200"' in note
    assert 'name="lines-0-item"' in page and 'name="lines-0-cost"' in page
    assert "data-add-row" in page
    assert 'name="action" value="approve"' in page and 'name="action" value="reject"' in page
    assert 'name="comment"' in page and 'name="signer"' in page
    # opening the task (a GET) takes no lock; the page offers to take it
    db.session.refresh(task)
    assert task.lock_holder_id is None and task.lock_expires_at is None
    assert 'id="take-form"' in page


def test_approve_through_the_form(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    data = _approve_form(client, task.id, comment="looks fine", paid_on="2024-03-01",
                         urgent="y", note="taxi", **{"lines-0-item": "Taxi", "lines-0-cost": "12.5",
                                                    "lines-1-item": "", "lines-1-cost": ""})
    response = client.post(f"/tasks/{task.id}/decide", data=data)
    assert response.status_code == 302
    db.session.refresh(task)
    assert task.status == "done" and task.outcome == "approve" and task.comment == "looks fine"
    assert task.form == {"amount": 12.5, "category": "Travel", "paid_on": "2024-03-01",
                         "urgent": True, "note": "taxi", "lines": [{"item": "Taxi", "cost": 12.5}]}
    assert [t.status for t in task.instance.tasks] == ["done", "pending"]
    assert "Task approved." in client.get("/").get_data(as_text=True)


def test_validation_errors_are_named_next_to_each_field(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    data = _approve_form(client, task.id, amount="-3", category="Hotel", paid_on="yesterday",
                         note="n" * 201, comment="c" * 2001, **{"lines-0-cost": "5"})
    response = client.post(f"/tasks/{task.id}/decide", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for name, message in [("amount", "Must be at least 0."), ("category", "Choose one of: Travel, Meals."),
                          ("paid_on", "Enter a date as YYYY-MM-DD."), ("note", "At most 200 characters."),
                          ("comment", "At most 2000 characters.")]:
        assert re.search(rf'name="{name}".*?invalid-feedback d-block">{re.escape(message)}<', page, re.S), name
    assert "Row 1: Item: This field is required." in page
    # what was typed is kept
    assert 'value="-3"' in page and 'value="yesterday"' in page
    db.session.refresh(task)
    assert task.status == "pending"


def test_reject_needs_no_required_fields(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    data = {"csrf_token": csrf_token(client, f"/tasks/{task.id}"), "action": "reject",
            "comment": "not ours"}
    assert client.post(f"/tasks/{task.id}/decide", data=data).status_code == 302
    db.session.refresh(task)
    assert task.outcome == "reject" and task.instance.status == "rejected"


def test_conflict_is_a_flash(client, factory):
    users = factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    data = _approve_form(client, task.id)
    engine.set_suspended(task.instance_id, users["admin"], True)
    db.session.commit()
    response = client.post(f"/tasks/{task.id}/decide", data=data, follow_redirects=True)
    assert "The instance is suspended." in response.get_data(as_text=True)
    db.session.refresh(task)
    assert task.status == "pending"


def test_countersign_then_sign(client, factory):
    users = factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    token = csrf_token(client, f"/tasks/{task.id}")
    response = client.post(f"/tasks/{task.id}/countersign",
                           data={"csrf_token": token, "signer": "nobody", "comment": ""})
    assert response.status_code == 422
    assert re.search(r'name="signer".*?invalid-feedback d-block">Unknown user.<',
                     response.get_data(as_text=True), re.S)
    response = client.post(f"/tasks/{task.id}/countersign",
                           data={"csrf_token": token, "signer": "carol", "comment": "check it"})
    assert response.status_code == 302
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "The task waits for a countersignature." in page and 'id="decide-form"' not in page

    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "carol")
    home = client.get("/").get_data(as_text=True)
    waiting = home.split("Tasks waiting for my countersignature")[1]
    assert f"/tasks/{task.id}" in waiting and "check it" in waiting
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert 'id="sign-form"' in page and 'id="decide-form"' not in page
    token = csrf_token(client, f"/tasks/{task.id}")
    response = client.post(f"/tasks/{task.id}/sign", data={"csrf_token": token, "comment": "ok"})
    assert response.status_code == 302
    request = db.session.execute(db.select(Countersign)).scalar_one()
    db.session.refresh(request)
    assert request.status == "signed"

    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "alice")
    response = client.post(f"/tasks/{task.id}/decide", data=_approve_form(client, task.id))
    assert response.status_code == 302
    db.session.refresh(task)
    assert task.status == "done"
    actions = [h.action for h in db.session.execute(
        db.select(History).order_by(History.id)).scalars()]
    assert actions == ["start", "countersign", "sign", "approve"]
    assert users["carol"].id == request.user_id


def test_recall_from_the_instance_page(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    client.post(f"/tasks/{task.id}/decide", data=_approve_form(client, task.id))
    page = client.get(f"/instances/{task.instance_id}").get_data(as_text=True)
    assert 'id="recall-form"' in page
    token = csrf_token(client, f"/instances/{task.instance_id}")
    response = client.post(f"/tasks/{task.id}/recall", data={"csrf_token": token})
    assert response.status_code == 302
    instance = db.session.get(Instance, task.instance_id)
    db.session.refresh(instance)
    assert [t.status for t in instance.tasks] == ["done", "recalled", "pending"]
    assert instance.tasks[-1].node_id == task.node_id
    assert response.headers["Location"] == f"/tasks/{instance.tasks[-1].id}"
    # nothing left to recall
    page = client.get(f"/instances/{task.instance_id}").get_data(as_text=True)
    assert 'id="recall-form"' not in page
    response = client.post(f"/tasks/{task.id}/recall", data={"csrf_token": token},
                           follow_redirects=True)
    assert "can no longer be recalled" in response.get_data(as_text=True)


def test_instance_page_shows_history(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    client.post(f"/tasks/{task.id}/decide", data=_approve_form(client, task.id, comment="fine"))
    page = client.get(f"/instances/{task.instance_id}").get_data(as_text=True)
    history = page.split('id="history"')[1]
    assert 'data-action="start"' in history and 'data-action="approve"' in history
    assert "alice" in history and "fine" in history and "Amount" in history and "12.5" in history


def test_other_users_tasks_and_instances_are_404(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "carol")
    assert client.get(f"/tasks/{task.id}").status_code == 404
    assert client.get(f"/instances/{task.instance_id}").status_code == 404
    assert client.get("/tasks/99999").status_code == 404
    token = csrf_token(client, "/")
    for action in ("decide", "countersign", "sign", "recall"):
        response = client.post(f"/tasks/{task.id}/{action}",
                               data={"csrf_token": token, "action": "approve", "signer": "bob"})
        assert response.status_code == 404, action
    db.session.refresh(task)
    assert task.status == "pending" and not task.countersigns


def test_task_page_and_field_errors_in_chinese(client, factory):
    factory.standard(tasks=1)
    task = _first_task()
    login(client, "alice")
    client.post("/lang/zh_CN", data={"csrf_token": csrf_token(client, "/")})
    home = client.get("/").get_data(as_text=True)
    assert "<h1" in home and "我的待办" in home and "等待我加签的任务" in home
    data = _approve_form(client, task.id, amount="", category="")
    page = client.post(f"/tasks/{task.id}/decide", data=data).get_data(as_text=True)
    assert re.search(r'name="amount".*?invalid-feedback d-block">此项必填。<', page, re.S)
    assert '<html lang="zh-CN">' in page and ">同意<" in page and ">驳回<" in page


def test_task_locked_by_someone_else_is_read_only(client, factory):
    users = factory.standard(tasks=1)
    task = _first_task()
    engine.decide(task.id, users["alice"], "approve", "", {"amount": 1, "category": "Meals"})
    db.session.commit()
    finance_task = task.instance.tasks[-1]
    factory.user("dave", workflow_roles="finance")
    engine.take_task(finance_task.id, users["bob"])
    db.session.commit()
    login(client, "dave")
    page = client.get(f"/tasks/{finance_task.id}").get_data(as_text=True)
    assert "The task is locked by someone else." in page and 'id="decide-form"' not in page
    db.session.refresh(finance_task)
    assert finance_task.lock_holder_id == users["bob"].id
