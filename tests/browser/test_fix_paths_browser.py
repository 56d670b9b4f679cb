"""Failures that end in a fix, in a real browser: an item whose values failed is corrected and runs again
(issue: data errors loop), and switching the language after a form came back with errors returns to that
form with the selection kept."""
import re

from browser.conftest import browser_login
from portal.batches import runner
from portal.infra.extensions import db
from portal.models import BatchItem, Task


def _failed_item(factory):
    """A batch of alice's whose only item failed validation (an import row without the amount)."""
    from portal.batches import creation
    users = factory.standard()
    task = factory.tasks(1, starter=users["admin"])[0]
    batch = creation.create_batch(users["alice"], task.node, task_ids=[task.id], mode="import", rows={
        task.id: {"decision": {"action": "approve", "form": {"amount": 10}}, "source_ref": "row 2"}})
    db.session.commit()
    runner.run_inline(batch.id)
    item = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)).scalar_one()
    ids = (batch.id, item.id, task.id, item.status, item.error_kind)
    db.session.rollback()
    return ids


def test_a_validation_failure_is_corrected_in_a_form_and_runs_again(page, factory):
    batch_id, item_id, task_id, status, kind = _failed_item(factory)
    assert (status, kind) == ("failed", "validation")
    browser_login(page, "alice")
    page.wait_for_url(re.compile(r"/$"))
    page.goto(page.base + f"/batches/{batch_id}")
    row = page.locator(f'tr[data-item-id="{item_id}"]')
    assert row.locator("[data-correct]").is_visible()
    assert row.locator("form[action$='/retry']").count() == 0  # no plain retry for bad data
    row.locator("[data-correct]").click()
    page.wait_for_url(re.compile(rf"/batches/{batch_id}/items/{item_id}/correct$"))
    assert page.input_value("#correct-form #amount") == "10"  # the item's values, prefilled
    assert "is-invalid" in page.get_attribute("#correct-form #category", "class")  # and its error
    page.select_option("#correct-form #category", "Meals")
    page.click("#correct-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/batches/{batch_id}/items/{item_id}$"))
    assert page.locator(".alert-success").count() == 1
    runner.run_inline(batch_id)  # what a worker does next
    db.session.expire_all()
    task = db.session.get(Task, task_id)
    assert task.status == "done" and (task.form["amount"], task.form["category"]) == (10, "Meals")
    db.session.rollback()


def test_switching_language_after_a_form_error_returns_to_the_form_with_the_selection(page, factory):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    node_id, task_ids = tasks[0].node_id, [t.id for t in tasks]
    db.session.rollback()
    browser_login(page, "alice")
    page.wait_for_url(re.compile(r"/$"))
    page.goto(page.base + f"/batches/new?node_id={node_id}&" + "&".join(f"task_ids={i}" for i in task_ids))
    page.check("#set-all-amount")
    page.click("#batch-form button[type=submit]")  # the amount is required: the form comes back
    assert page.locator('[data-error-for="amount"]').is_visible()
    page.click("#lang-menu")
    with page.expect_navigation():
        page.click("form[data-language=zh_CN] [type=submit]")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert re.search(r"/batches/new\?", page.url)  # the form's page, not a 404 or 405
    assert page.locator("[data-eligible]").inner_text() == "3"  # the selection is still there
