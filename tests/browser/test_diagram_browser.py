"""Process diagrams in a real browser: the instance page draws its version's BPMN with the
vendored bpmn-js viewer, marks the done and current user tasks, and the admin process page
puts pending counts on them, all under the portal's strict CSP (no console errors, no
violations); when the file cannot be had the page says so."""
import pytest

from conftest import browser_login
from portal.infra.extensions import db
from portal.models import Instance, Task
from portal.workflow.engine import decide, start_instance
from support import GOOD_FORM

# Recorded from the first script of every page, before any of the page's own.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


@pytest.fixture
def watched(page):
    """The page, with its console errors and CSP violations collected."""
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.add_init_script(WATCH_CSP)
    return page


def _moved_on_instance(users, count=1):
    """``count`` expense claims started by alice; the first approved by her at the manager node."""
    ids = [start_instance("expense", f"Claim {i}", {}, users["alice"]).id for i in range(count)]
    db.session.commit()
    first = db.session.execute(db.select(Task).where(Task.instance_id == ids[0])).scalar_one()
    decide(first.id, users["alice"], "approve", form=GOOD_FORM)
    db.session.commit()
    process_id = db.session.get(Instance, ids[0]).process_id
    db.session.rollback()  # on SQLite an open transaction would hold the lock the server needs
    return ids, process_id


def _assert_clean(page):
    assert page.evaluate("window.__cspViolations") == []
    assert page.console_errors == []


def _stroke_of(page, element_id):
    return page.eval_on_selector(f"#instance-diagram g.djs-element[data-element-id='{element_id}'] "
                                 ".djs-visual > :first-child", "el => getComputedStyle(el).stroke")


def test_instance_page_draws_the_diagram_with_markers(watched, factory):
    users = factory.standard()
    (instance_id,), _process_id = _moved_on_instance(users)
    browser_login(watched, "alice")
    watched.wait_for_url(watched.base + "/")
    watched.goto(watched.base + f"/instances/{instance_id}")
    watched.wait_for_selector("#instance-diagram[data-bpmn-state=ready]")

    svg = "#instance-diagram .djs-container > svg"  # (the bpmn.io logo is an SVG too)
    assert watched.locator(svg).count() == 1
    for key in ("manager", "finance"):  # the user tasks, drawn as shapes of the SVG
        assert watched.locator(f"{svg} g.djs-shape[data-element-id='{key}']").count() == 1
    classes = {key: watched.get_attribute(f"{svg} g.djs-element[data-element-id='{key}']", "class")
               for key in ("manager", "finance")}
    assert "diagram-active" in classes["finance"] and "diagram-done" not in classes["finance"]
    assert "diagram-done" in classes["manager"] and "diagram-active" not in classes["manager"]
    assert "diagram-rejected" not in classes["manager"] + classes["finance"]
    # The markers' CSS wins over the styles bpmn-js sets on each shape.
    assert _stroke_of(watched, "finance") == "rgb(13, 110, 253)"
    assert _stroke_of(watched, "manager") == "rgb(25, 135, 84)"
    assert watched.locator(f"{svg} text", has_text="Finance review").count() == 1
    assert watched.locator("[data-bpmn-status]").count() == 0
    assert watched.get_by_role("heading", name="Diagram").is_visible()

    before = watched.evaluate("document.querySelector('#instance-diagram .djs-container > svg .viewport')"
                              ".getAttribute('transform')")
    watched.click("[data-diagram-zoom=in]")
    assert watched.evaluate("document.querySelector('#instance-diagram .djs-container > svg .viewport')"
                            ".getAttribute('transform')") != before
    _assert_clean(watched)


def test_admin_process_page_shows_pending_counts(watched, factory):
    users = factory.standard()
    _ids, process_id = _moved_on_instance(users, count=3)
    browser_login(watched, "admin")
    watched.wait_for_url(lambda url: "/login" not in url)  # admins land on Needs attention
    watched.goto(watched.base + f"/admin/processes/{process_id}")
    watched.wait_for_selector("#process-diagram[data-bpmn-state=ready]")
    badges = {key: watched.inner_text(f"#process-diagram .diagram-count-badge[data-count-for='{key}']")
              for key in ("manager", "finance")}
    assert badges == {"manager": "2", "finance": "1"}
    assert watched.locator("#process-diagram .djs-overlay-pending-count").count() == 2
    _assert_clean(watched)


def test_a_diagram_that_cannot_be_fetched_says_so(watched, factory):
    users = factory.standard()
    (instance_id,), _process_id = _moved_on_instance(users)
    browser_login(watched, "alice")
    watched.wait_for_url(watched.base + "/")
    watched.route("**/diagram.bpmn", lambda route: route.fulfill(status=500, body="broken"))
    watched.goto(watched.base + f"/instances/{instance_id}")
    watched.wait_for_selector("#instance-diagram[data-bpmn-state=failed]")
    status = watched.inner_text("#instance-diagram [data-bpmn-status]")
    assert "The diagram could not be shown." in status
    assert watched.get_attribute("#instance-diagram [data-bpmn-status] a", "href") == \
        f"/instances/{instance_id}/diagram.bpmn"
    assert watched.locator("#instance-diagram .djs-container").count() == 0
    assert not watched.locator("[data-diagram-controls]").is_visible()
    assert watched.evaluate("window.__cspViolations") == []
