"""The task page in a real browser: log in, open a task from My tasks, fill its
form (including a table row added with the page's script) and approve it, once
in English and once in Chinese chosen from the navbar."""
from conftest import browser_login
from portal.infra.extensions import db
from portal.models import Task


def _task_ids():
    """Ids of the pending tasks, read in a transaction that is closed again
    (on SQLite an open transaction would hold the write lock the server needs)."""
    ids = db.session.execute(db.select(Task.id).where(Task.status == "pending")
                             .order_by(Task.id)).scalars().all()
    db.session.rollback()
    return ids


def _approved_task(task_id):
    db.session.rollback()
    task = db.session.get(Task, task_id)
    summary = {"status": task.status, "outcome": task.outcome, "form": task.form,
               "comment": task.comment,
               "instance_tasks": [(t.node.key, t.status) for t in task.instance.tasks]}
    db.session.rollback()
    return summary


def _fill_and_approve(page, task_id, approve_label):
    page.fill("input[name=amount]", "42.5")
    page.select_option("select[name=category]", "Meals")
    page.fill("input[name=paid_on]", "2024-03-01")
    page.check("input[name=urgent]")
    page.fill("input[name=lines-0-item]", "Lunch")
    page.fill("input[name=lines-0-cost]", "30")
    page.click("[data-add-row]")
    page.fill("input[name=lines-1-item]", "Taxi")
    page.fill("input[name=lines-1-cost]", "12.5")
    page.fill("textarea[name=comment]", "ok")
    page.get_by_role("button", name=approve_label, exact=True).click()
    page.wait_for_url(page.base + "/")


def _assert_moved_on(task_id):
    task = _approved_task(task_id)
    assert task["status"] == "done" and task["outcome"] == "approve" and task["comment"] == "ok"
    assert task["form"] == {"amount": 42.5, "category": "Meals", "paid_on": "2024-03-01",
                            "urgent": True, "lines": [{"item": "Lunch", "cost": 30},
                                                      {"item": "Taxi", "cost": 12.5}]}
    assert task["instance_tasks"] == [("manager", "done"), ("finance", "pending")]


def test_approve_a_task_in_english(page, factory):
    factory.standard(tasks=2)
    task_id = _task_ids()[0]
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    assert page.locator("h1").inner_text() == "My tasks"
    page.click(f"tr[data-task-id='{task_id}'] a")
    page.wait_for_url(page.base + f"/tasks/{task_id}")
    _fill_and_approve(page, task_id, "Approve")
    assert "Task approved." in page.locator(".alert").inner_text()
    assert page.locator("tr[data-task-id]").count() == 1
    _assert_moved_on(task_id)


def test_approve_a_task_in_chinese(page, factory):
    factory.standard(tasks=2)
    task_id = _task_ids()[1]
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    page.click("#lang-menu")
    page.get_by_role("button", name="简体中文").click()  # a POST form, not a link
    page.wait_for_url(page.base + "/")
    assert page.locator("h1").inner_text() == "我的待办"
    assert page.locator("#lang-menu").inner_text() == "中文"
    page.click(f"tr[data-task-id='{task_id}'] a")
    page.wait_for_url(page.base + f"/tasks/{task_id}")
    assert page.get_by_text("您的审批").is_visible()
    _fill_and_approve(page, task_id, "同意")
    assert "任务已同意。" in page.locator(".alert").inner_text()
    _assert_moved_on(task_id)


def test_server_side_errors_show_next_to_fields(page, factory):
    factory.standard(tasks=1)
    task_id = _task_ids()[0]
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    page.goto(page.base + f"/tasks/{task_id}")
    page.fill("input[name=amount]", "5")
    page.select_option("select[name=category]", "Travel")
    page.fill("input[name=lines-0-cost]", "3")  # a row without its required item
    page.get_by_role("button", name="Approve", exact=True).click()
    page.wait_for_load_state()
    assert "Row 1: Item: This field is required." in page.locator("fieldset.table-field").inner_text()
    assert _approved_task(task_id)["status"] == "pending"
