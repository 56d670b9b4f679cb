"""The people's path in a real browser: finding batch approve on My tasks (a
node to pick, ticks kept across pages with a live count, one batch of every
page's ticks), the pages at phone width (390x844) without sideways scrolling,
and the batch page's outcome bar, item numbers and applied decisions."""
import re

from browser.conftest import browser_login
from portal.batches import creation, runner
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Task
from portal.workflow.engine import validate_decision

PHONE = {"width": 390, "height": 844}
GOOD_FORM = {"amount": 12.5, "category": "Travel"}


def _pending_task_ids():
    """Ids of the pending tasks in My tasks order, read in a transaction that is
    closed again (on SQLite an open one would hold the write lock the server needs)."""
    ids = db.session.execute(db.select(Task.id).where(Task.status == "pending")
                             .order_by(Task.id)).scalars().all()
    db.session.rollback()
    return ids


def _batches():
    """[(task ids of its items, status)] of every batch, oldest first."""
    db.session.rollback()
    found = [(sorted(db.session.execute(db.select(BatchItem.task_id).where(
        BatchItem.batch_id == batch.id)).scalars().all()), batch.status)
        for batch in db.session.execute(db.select(Batch).order_by(Batch.id)).scalars()]
    db.session.rollback()
    return found


def _button_text(page):
    return page.locator("[data-selection-submit]").inner_text().strip()


def test_selection_is_kept_across_pages_and_makes_one_batch(page, factory):
    factory.standard(tasks=55)                       # two pages of alice's tasks at one node
    task_ids = _pending_task_ids()
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")

    # "All nodes": no checkboxes, but a hint leading to the node
    assert page.locator("input[name=task_ids]").count() == 0
    hint = page.locator("#pick-node-hint")
    assert "pick a node" in hint.inner_text()
    hint.locator("a[data-pick-node]").click()
    page.wait_for_url(re.compile(r"node_id=\d+"))
    assert _button_text(page) == "Batch approve selected (0 tasks)"
    assert page.locator("[data-selection-submit]").is_disabled()

    # page 1: every row, then one of them taken out again
    page.click("[data-select-page]")
    assert _button_text(page) == "Batch approve selected (50 tasks)"
    page.uncheck(f"input[name=task_ids][value='{task_ids[0]}']")
    assert _button_text(page) == "Batch approve selected (49 tasks)"

    # page 2: one more; the count covers both pages
    page.locator(".pagination a", has_text="2").first.click()
    page.wait_for_url(re.compile(r"page=2"))
    assert _button_text(page) == "Batch approve selected (49 tasks)"
    page.check(f"input[name=task_ids][value='{task_ids[52]}']")
    assert _button_text(page) == "Batch approve selected (50 tasks)"

    # back on page 1 the ticks are still there
    page.locator(".pagination a", has_text="1").first.click()
    page.wait_for_url(re.compile(r"page=1"))
    assert not page.is_checked(f"input[name=task_ids][value='{task_ids[0]}']")
    assert page.is_checked(f"input[name=task_ids][value='{task_ids[1]}']")
    assert page.locator("input[name=task_ids]:checked").count() == 49

    # the actions stay in view at the end of the long list
    page.set_viewport_size({"width": 1280, "height": 500})
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    top = page.locator("#selection-bar").evaluate("bar => bar.getBoundingClientRect().top")
    assert 0 <= top < 500

    # the ids of both pages go in the body of a POST
    with page.expect_request(lambda request: "/batches/new" in request.url) as sent:
        page.click("[data-selection-submit]")
    assert sent.value.method == "POST" and "task_ids" not in sent.value.url
    page.wait_for_load_state()
    chosen = task_ids[1:50] + [task_ids[52]]
    assert page.locator("[data-eligible]").inner_text() == "50"
    assert sorted(int(v) for v in page.locator(
        "#batch-form input[name=task_ids]").evaluate_all("inputs => inputs.map(i => i.value)")) == chosen

    page.check("#set-all-amount")
    page.check("#set-all-category")
    page.fill("#field-amount", "42")
    page.select_option("#field-category", "Travel")
    page.click("#batch-form button[type=submit]")
    page.wait_for_url(re.compile(r"/batches/\d+$"))
    assert _batches() == [(chosen, "pending")]

    # a batch was made of them: My tasks starts a new selection
    page.goto(page.base + _node_page())
    assert _button_text(page) == "Batch approve selected (0 tasks)"
    assert page.locator("input[name=task_ids]:checked").count() == 0


def _node_page():
    """My tasks at the node of the tasks (the first process has one node for alice)."""
    node_id = db.session.execute(db.select(Task.node_id).order_by(Task.id).limit(1)).scalar()
    db.session.rollback()
    return f"/?node_id={node_id}"


def test_one_tick_reads_in_the_singular_and_another_node_starts_afresh(page, factory):
    users = factory.standard(tasks=3)
    factory.process({"key": "leave", "name": "Leave request", "nodes": [
        {"key": "lead", "name": "Team lead", "assignee": "user:alice", "fields": []}]})
    factory.tasks(2, process_key="leave", starter=users["admin"], title="Leave")
    db.session.rollback()
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    links = page.locator("#pick-node-hint a[data-pick-node]")
    assert links.count() == 2
    first, second = links.nth(0).get_attribute("href"), links.nth(1).get_attribute("href")
    page.goto(page.base + first)
    page.locator("input[name=task_ids]").first.check()
    assert _button_text(page) == "Batch approve selected (1 task)"
    page.goto(page.base + second)
    assert _button_text(page) == "Batch approve selected (0 tasks)"
    page.goto(page.base + first)                      # the other node's ticks were dropped
    assert page.locator("input[name=task_ids]:checked").count() == 0


def _batch_needing_people(factory, users):
    """A finished import batch of alice's: four approved, one rejected, one whose
    values failed (to correct) and two that failed for a user error (to retry)."""
    tasks = factory.tasks(8, starter=users["admin"])
    node = tasks[0].node
    rows = {}
    for number, task in enumerate(tasks, start=2):
        action = "reject" if number == 3 else "approve"
        rows[task.id] = {"source_ref": f"row {number}", "decision": {
            "action": action, "comment": None,
            "form": validate_decision(node, action, None, GOOD_FORM)}}
    rows[tasks[4].id].update(error="Amount: Must be at least 0",
                             field_errors={"amount": "Must be at least 0."})
    batch = creation.create_batch(users["alice"], node, task_ids=[t.id for t in tasks],
                                  mode="single", rows=rows)
    db.session.commit()
    for _ in range(5):
        runner.run_lane(batch.id, slice_seconds=0)
    users["alice"].disabled = True                   # what is left fails for a user error
    db.session.commit()
    runner.run_inline(batch.id)
    users["alice"].disabled = False
    db.session.commit()
    summary = (batch.id, batch.number, batch.success, batch.failed)
    db.session.rollback()
    return summary


def _no_sideways_scrolling(page, path):
    page.goto(page.base + path)
    page.wait_for_load_state("networkidle")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{path} is {width}px wide"


def test_phone_pages_fit_the_screen_and_show_the_item_buttons(page, factory):
    users = factory.standard(tasks=3)
    batch_id, _number, success, failed = _batch_needing_people(factory, users)
    assert (success, failed) == (5, 3)
    page.set_viewport_size(PHONE)

    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    task_id = _pending_task_ids()[0]
    for path in ("/", _node_page(), f"/tasks/{task_id}", f"/batches/{batch_id}"):
        _no_sideways_scrolling(page, path)
    page.goto(page.base + "/")
    assert not page.get_by_role("columnheader", name="Process").is_visible()
    created = page.locator(f"tr[data-task-id='{task_id}'] time")
    box = created.bounding_box()
    assert box["x"] + box["width"] <= 390                    # the date is not cut off
    assert re.fullmatch(r"\d{4}-\d\d-\d\d\s+\d\d:\d\d", created.inner_text())

    page.context.clear_cookies()
    browser_login(page, "sam")
    page.wait_for_url(page.base + "/attention")
    _no_sideways_scrolling(page, "/attention")
    _no_sideways_scrolling(page, f"/batches/{batch_id}")
    # items are cards: the Retry and Correct buttons are on screen
    retry = page.locator("#items-table form[action$='/retry'] button").first
    correct = page.locator("#items-table [data-correct]").first
    for button in (retry, correct):
        button.scroll_into_view_if_needed()
        assert button.is_visible()
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    # the chart stays small: the items start within the first screen and a half
    items_top = page.locator("#items-title").evaluate(
        "h => h.getBoundingClientRect().top + window.scrollY")
    assert items_top < 1.5 * PHONE["height"]


def test_batch_page_shows_outcome_parts_item_numbers_and_decisions(page, factory):
    users = factory.standard()
    batch_id, number, _success, _failed = _batch_needing_people(factory, users)
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    page.goto(f"{page.base}/batches/{batch_id}")

    bar = page.locator("[data-progress-bar]")
    assert bar.get_attribute("aria-valuenow") == "100"
    # 5 of 8 succeeded, 3 failed: a green part and a red part, not one red bar
    widths = bar.evaluate("""bar => Object.fromEntries(Array.from(
        bar.querySelectorAll('[data-segment]'), s => [s.dataset.segment,
        s.getBoundingClientRect().width * 100 / bar.getBoundingClientRect().width]))""")
    expected = {"success": 62.5, "failed": 37.5, "ignored": 0, "cancelled": 0}
    assert all(abs(widths[name] - share) < 1 for name, share in expected.items()), widths
    assert not page.locator("[data-progress-bar] .bg-danger").evaluate_all(
        "bars => bars.some(b => b.parentElement.dataset.segment !== 'failed')")
    assert page.locator("[data-progress-text]").inner_text() == "100% done"

    rows = page.locator("#items-table tbody tr")
    assert rows.nth(0).locator("[data-item-number]").inner_text() == f"{number} #1"
    assert rows.nth(7).locator("[data-item-number]").inner_text() == f"{number} #8"
    assert rows.nth(0).locator("[data-applied]").inner_text() == "Approved"
    assert rows.nth(1).locator("[data-applied]").inner_text() == "Rejected"
    assert rows.nth(4).get_attribute("data-status") == "import_failed"
    assert page.locator("[data-concurrency]").inner_text() == "Runs at most 5 items at a time"


def test_the_outcome_bar_follows_a_running_batch(page, factory):
    users = factory.standard()
    tasks = factory.tasks(4, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)        # no workers: it waits
    batch_id = batch.id
    db.session.rollback()
    browser_login(page, "alice")
    page.wait_for_url(page.base + "/")
    page.goto(f"{page.base}/batches/{batch_id}")
    success = page.locator("[data-segment=success]")
    assert success.evaluate("s => s.getBoundingClientRect().width") == 0
    runner.run_inline(batch_id)                         # the page's polling sees it end
    page.locator('#batch-progress[data-active="0"]').wait_for(timeout=30000)
    assert page.locator('[data-counter="success"]').inner_text() == "4"
    assert success.evaluate(
        "s => Math.round(s.getBoundingClientRect().width * 100 / s.parentElement.getBoundingClientRect().width)"
    ) == 100
