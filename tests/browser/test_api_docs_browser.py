"""The API documentation page in chromium: Swagger UI renders every operation under the
portal's strict content security policy, with nothing in the console."""
import re

from playwright.sync_api import expect


def _console_errors(page):
    """Console errors and uncaught exceptions; a blocked script or style shows up here.
    The browser's own request for /favicon.ico (the portal has none) is not the page's."""
    errors = []

    def on_console(message):
        if message.type == "error" and not (message.location or {}).get(
                "url", "").endswith("/favicon.ico"):
            errors.append(message.text)
    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_the_docs_page_shows_every_operation_without_a_token(page, client):
    document = client.get("/api/v1/openapi.json").get_json()
    expected = {(method.upper(), path) for path, item in document["paths"].items()
                for method in item}
    errors = _console_errors(page)
    page.goto(page.base + "/api/v1/docs")  # not logged in, no token
    page.wait_for_selector(".opblock")
    shown = set()
    for block in page.locator(".opblock").all():
        method = block.locator(".opblock-summary-method").inner_text().strip()
        path = block.locator(".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert shown == expected

    # an operation opens with its parameters and its documented answers
    tasks = page.locator("#operations-Tasks-list_tasks")
    tasks.locator(".opblock-summary").click()
    # the block opens a moment after the click: wait for it (up to the default 5 s)
    expect(tasks.locator("tr[data-param-name='cursor']")).to_be_visible()
    expect(tasks.locator(".responses-table .response[data-code='401']")).to_have_count(1)
    # "Try it out" without a token calls the API on this origin and shows its 401
    tasks.locator("button.try-out__btn").click()
    tasks.locator("button.execute").click()
    expect(tasks.locator(".live-responses-table tbody .response-col_status")).to_have_text(
        re.compile(r"\b401\b"))
    assert [e for e in errors if "401" not in e] == []
