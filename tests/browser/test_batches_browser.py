"""Batch approve in a real browser with real workers, in English and in Chinese:
open the batch form for a selection, see the preview, fix a form error,
confirm, watch the progress bar reach 100%, find the batch in the list."""
import re

import pytest

from browser.conftest import browser_login
from portal.infra.extensions import db
from portal.models import Batch


def _selection(factory):
    """alice's six pending tasks plus an id that does not exist; no transaction left open."""
    users = factory.standard()
    tasks = factory.tasks(6, starter=users["admin"])
    node_id, task_ids = tasks[0].node_id, [t.id for t in tasks]
    db.session.rollback()  # SQLite: an open transaction would hold the write lock
    return node_id, task_ids + [987654]


def _only_batch():
    db.session.rollback()
    batch = db.session.execute(db.select(Batch)).scalar_one()
    snapshot = (batch.status, batch.total, batch.success, batch.ignored, batch.number)
    db.session.rollback()
    return snapshot


def _policy_violations(page):
    """Collects console errors (a blocked inline script or style shows up there)."""
    errors = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_batch_approve_from_selection_to_finished(page, factory, workers, language):
    node_id, task_ids = _selection(factory)
    workers.start(2)
    errors = _policy_violations(page)
    browser_login(page, "alice")
    page.wait_for_url(re.compile(r"/$"))
    new_url = f"/batches/new?node_id={node_id}&" + "&".join(f"task_ids={i}" for i in task_ids)
    page.goto(page.base + new_url)
    page.click("#lang-menu")
    with page.expect_navigation():
        page.click(f"form[data-language={language}] [type=submit]")

    # the preview: six eligible, one id that names no task of alice's
    assert page.locator("[data-eligible]").inner_text() == "6"
    assert page.locator('[data-reason="unavailable"] strong').inner_text() == "1"

    # a required field left empty: the form comes back with the error next to it
    page.check("#set-all-amount")
    page.check("#set-all-category")
    page.select_option("#field-category", "Travel")
    page.fill("#comment", "approved in the browser")
    page.click("#batch-form button[type=submit]")
    assert page.locator('[data-error-for="amount"]').is_visible()
    assert page.input_value("#comment") == "approved in the browser"

    page.fill("#field-amount", "42")
    page.check("#set-all-urgent")
    page.check("#field-urgent")
    page.click("#batch-form button[type=submit]")
    page.wait_for_url(re.compile(r"/batches/\d+$"))

    # live progress until every item ended; the page reloads itself when done
    page.locator('[data-progress-bar][aria-valuenow="100"]').wait_for(timeout=90000)
    page.locator('#batch-progress[data-active="0"]').wait_for(timeout=30000)
    assert page.locator('[data-counter="success"]').inner_text() == "6"
    assert page.locator('[data-counter="ignored"]').inner_text() == "1"
    assert page.evaluate("() => !!Chart.getChart(document.getElementById('batch-chart'))")
    status, total, success, ignored, number = _only_batch()
    assert (status, total, success, ignored) == ("finished", 7, 6, 1)

    # the list shows it, with its dates in the reader's language
    page.click("nav a[href='/batches']")
    row = page.locator("#batches-table tbody tr").first
    assert number in row.inner_text()
    if language == "zh_CN":
        assert "年" in row.inner_text()
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_pause_and_cancel_through_the_confirmation_dialogs(page, factory):
    node_id, task_ids = _selection(factory)  # no workers: the batch stays pending
    browser_login(page, "alice")
    page.wait_for_url(re.compile(r"/$"))
    page.goto(f"{page.base}/batches/new?node_id={node_id}&"
              + "&".join(f"task_ids={i}" for i in task_ids))
    page.check("#set-all-amount")
    page.check("#set-all-category")
    page.fill("#field-amount", "5")
    page.select_option("#field-category", "Meals")
    page.click("#batch-form button[type=submit]")
    page.wait_for_url(re.compile(r"/batches/\d+$"))

    page.click('[data-bs-target="#confirm-pause"]')
    page.locator("#confirm-pause [data-modal-confirm]").click()
    page.locator("form[action$='/resume'] button").wait_for()   # a paused batch offers resume
    assert _only_batch()[0] == "paused"

    page.click('[data-bs-target="#confirm-cancel"]')
    dialog = page.locator("#confirm-cancel")
    dialog.wait_for(state="visible")
    dialog.locator("[data-modal-confirm]").click()
    page.locator('[data-counter="cancelled"]', has_text="6").wait_for()
    assert _only_batch()[0] == "cancelled"
    assert page.locator('[data-event="cancelled"]').count() == 1
