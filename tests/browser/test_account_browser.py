"""Account pages in a real browser: the language switch (a POST form in the
navbar) on the login page, changing one's password from the navbar user name
(which logs out the user's other browser), and taking a task with its button."""
import re

from conftest import browser_login
from portal.infra.extensions import db
from portal.models import Task, User


def _pending_task():
    task_id = db.session.execute(db.select(Task.id).where(Task.status == "pending")
                                 .order_by(Task.id)).scalars().first()
    db.session.rollback()
    return task_id


def _lock_holder(task_id):
    db.session.rollback()
    holder = db.session.get(Task, task_id).lock_holder_id
    db.session.rollback()
    return holder


def test_switch_language_on_the_login_page_then_log_in(page, factory):
    factory.standard()
    page.goto(page.base + "/batches")  # sent to the login page, with next=/batches
    page.wait_for_url(re.compile(r"/login\?next="))
    page.click("#lang-menu")
    page.get_by_role("button", name="简体中文").click()
    page.wait_for_url(re.compile(r"/login\?next=%2Fbatches$"))
    assert page.locator("h1").inner_text() == "登录"
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "password-123")
    page.click("main button[type=submit]")
    page.wait_for_url(page.base + "/batches")
    assert page.locator("#lang-menu").inner_text() == "中文"


def test_change_password_from_the_navbar_logs_out_other_browsers(page, factory, _browser):
    factory.standard()
    other = _browser.new_context(locale="en-US").new_page()
    other.base = page.base
    browser_login(other, "alice")
    other.wait_for_url(page.base + "/")
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    page.click("#account-link")
    page.wait_for_url(page.base + "/account/password")
    page.fill("input[name=old_password]", "password-123")
    page.fill("input[name=new_password]", "another-pass-77")
    page.fill("input[name=confirm]", "another-pass-77")
    page.click("#password-form button[type=submit]")
    page.wait_for_url(page.base + "/")
    assert "Your password was changed." in page.locator(".alert").inner_text()
    page.reload()
    assert page.locator("h1").inner_text() == "My tasks"  # this browser stays logged in
    other.goto(page.base + "/")
    other.wait_for_url(re.compile(r"/login"))  # the other one is logged out
    other.context.close()
    db.session.rollback()
    alice = db.session.execute(db.select(User).where(User.username == "alice")).scalar_one()
    assert alice.check_password("another-pass-77")
    db.session.rollback()


def test_take_a_task_with_its_button(page, factory):
    factory.standard(tasks=1)
    task_id = _pending_task()
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    page.goto(page.base + f"/tasks/{task_id}")
    assert _lock_holder(task_id) is None  # opening it took nothing
    page.get_by_role("button", name="Take this task").click()
    page.wait_for_selector("#held-by-me")
    assert "You hold this task for 15 minutes" in page.locator(".alert").inner_text()
    assert _lock_holder(task_id) is not None
