"""The RQ dashboard at /admin/rq (admins only, the portal's CSRF on its actions, a CSP that lets
through only its own inline scripts), request ids (header, error pages) and log lines (one per event,
JSON with LOG_FORMAT=json)."""
import json
import logging
import re

import pytest
from flask import g

from support import csrf_token, login
from portal import create_app
from portal.infra import logs
from portal.infra.queueing import get_queue

DASHBOARD = "/admin/rq/"


def _csrf_cookie(response):
    """The token rq-dashboard's scripts read from the ``_csrf_token`` cookie of its pages."""
    for header in response.headers.getlist("Set-Cookie"):
        match = re.match(r"_csrf_token=([^;]+);", header)
        if match:
            assert "Path=/admin/rq" in header and "SameSite=Strict" in header
            assert "HttpOnly" not in header  # its scripts must read it
            return match.group(1)
    raise AssertionError("no _csrf_token cookie")


# --- the dashboard ---------------------------------------------------------------------

@pytest.mark.parametrize("url", [DASHBOARD, "/admin/rq/0/view/workers", "/admin/rq/0/view/jobs",
                                 "/admin/rq/0/data/queues.json", "/admin/rq/0/data/workers.json"])
def test_admins_see_the_dashboard_on_the_portals_redis(client, users, url):
    get_queue().enqueue("portal.jobs.periodic.recover_batches")  # a job waiting on the portal's queue
    login(client, "admin")
    response = client.get(url)
    assert response.status_code == 200, url
    if response.is_json:
        if "queues" in response.json:
            assert {"name": "portal", "count": 1}.items() <= next(
                q for q in response.json["queues"] if q["name"] == "portal").items()
    else:
        assert "RQ" in response.get_data(as_text=True)


def test_the_dashboards_page_runs_only_its_own_inline_script(client, users):
    login(client, "admin")
    response = client.get(DASHBOARD)
    html = response.get_data(as_text=True)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert re.search(r"script-src 'self' 'unsafe-eval' 'sha256-[A-Za-z0-9+/=]+'", csp)
    assert "<script" in html and "var POLL_INTERVAL" in html
    # the portal's own pages keep the strict policy
    portal_csp = client.get("/admin/health").headers["Content-Security-Policy"]
    assert "script-src 'self';" in portal_csp and "sha256" not in portal_csp


@pytest.mark.parametrize("name", ["sam", "alice"])
def test_supervisors_and_users_get_a_404(client, users, name):
    login(client, name)
    for url in [DASHBOARD, "/admin/rq/0/view/workers", "/admin/rq/0/data/queues.json"]:
        assert client.get(url).status_code == 404, url


def test_anonymous_visitors_are_sent_to_log_in(client, users):
    for url in [DASHBOARD, "/admin/rq/0/data/queues.json"]:
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_dashboard_actions_need_the_portals_csrf_token(client, users):
    job = get_queue().enqueue("portal.jobs.periodic.recover_batches")
    login(client, "admin")
    token = _csrf_cookie(client.get(DASHBOARD))
    delete = f"/admin/rq/job/{job.id}/delete"
    assert client.post(delete).status_code == 400  # no token: refused, nothing deleted
    assert client.post(delete, headers={"X-CSRFToken": "forged"}).status_code == 400
    assert get_queue().count == 1
    response = client.post(delete, headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.json == {"status": "OK"}
    assert get_queue().count == 0
    # the one action that answered GET is POST only
    assert client.get("/admin/rq/requeue/portal").status_code == 405
    assert client.post("/admin/rq/requeue/portal", headers={"X-CSRFToken": token}).json["status"] == "OK"


def test_dashboard_actions_are_404_to_non_admins_even_with_a_valid_token(client, users):
    job = get_queue().enqueue("portal.jobs.periodic.recover_batches")
    login(client, "sam")
    token = csrf_token(client, "/")
    response = client.post(f"/admin/rq/job/{job.id}/delete", headers={"X-CSRFToken": token})
    assert response.status_code == 404
    assert get_queue().count == 1


def test_only_the_portals_redis_instance_exists(client, users):
    login(client, "admin")
    assert client.get("/admin/rq/1/view/queues").status_code == 404
    assert client.get("/admin/rq/1/data/queues.json").status_code == 404


def test_the_health_page_links_to_the_dashboard(client, users):
    login(client, "admin")
    html = client.get("/admin/health").get_data(as_text=True)
    assert 'id="rq-dashboard-link" href="/admin/rq/"' in html


# --- request ids ----------------------------------------------------------------------

def test_every_answer_carries_a_request_id(client):
    first = client.get("/login").headers["X-Request-ID"]
    second = client.get("/login").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
    assert client.get("/api/v1/nodes").headers["X-Request-ID"]


def test_a_sane_incoming_request_id_is_kept_and_anything_else_replaced(client):
    kept = client.get("/login", headers={"X-Request-ID": "edge-7f3a.42_x"})
    assert kept.headers["X-Request-ID"] == "edge-7f3a.42_x"
    for offered in ["has space", "<script>", "x" * 101, "-leading-dash", "é"]:
        answered = client.get("/login", headers={"X-Request-ID": offered}).headers["X-Request-ID"]
        assert answered != offered and re.fullmatch(r"[0-9a-f]{32}", answered), offered


def test_error_pages_show_the_request_id(client, users):
    missing = client.get("/no-such-page", headers={"X-Request-ID": "trace-404"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "trace-404"
    assert 'id="request-id"' in missing.get_data(as_text=True)
    assert "<code>trace-404</code>" in missing.get_data(as_text=True)
    login(client, "alice")
    forbidden = client.get("/admin/users")
    assert forbidden.status_code == 403
    assert f"<code>{forbidden.headers['X-Request-ID']}</code>" in forbidden.get_data(as_text=True)


# --- log lines --------------------------------------------------------------------------

@pytest.fixture
def root_logging():
    """Only the portal's handler on the root logger for the test, as the app configures it;
    the session's logging is put back afterwards. Loggers made before the migrations ran were
    disabled by Alembic's logging setup: the ones a test reads are enabled for it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    disabled = [logging.getLogger(name) for name in ("portal.metrics", "portal.tests")]
    was_disabled = [logger.disabled for logger in disabled]
    root.handlers = []
    for logger in disabled:
        logger.disabled = False
    yield root
    root.handlers, level = saved
    root.setLevel(level)
    for logger, state in zip(disabled, was_disabled):
        logger.disabled = state


def _lines(captured):
    return [line for line in captured.err.splitlines() if line.strip()]


def test_log_format_json_makes_one_json_object_per_line(root_logging, capsys, monkeypatch, app, users):
    monkeypatch.setenv("LOG_FORMAT", "json")
    create_app({"TESTING": True, "RATELIMIT_STORAGE_URI": "memory://"})  # reads LOG_FORMAT
    capsys.readouterr()
    log = logging.getLogger("portal.tests")
    with app.test_request_context("/batches/3", headers={"X-Request-ID": "req-77"}):
        g._login_user = users["alice"]
        assert users["alice"].username == "alice"  # loaded, as a request's user is
        log.warning("item %s failed", 9, extra={"batch_id": 3, "item_id": 9})
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            log.exception("could not record item %s", 9, extra={"batch_id": 3, "item_id": 9})
    log.info("outside any request")
    lines = _lines(capsys.readouterr())
    assert len(lines) == 3, lines
    first, second, third = (json.loads(line) for line in lines)
    assert first.keys() == {"time", "level", "logger", "message", "request_id", "user",
                            "batch_id", "item_id"}
    assert (first["level"], first["logger"], first["message"]) == ("WARNING", "portal.tests",
                                                                   "item 9 failed")
    assert (first["request_id"], first["user"], first["batch_id"], first["item_id"]) == (
        "req-77", "alice", 3, 9)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["level"] == "ERROR" and "RuntimeError: boom\nsecond line" in second["exception"]
    assert third.keys() == {"time", "level", "logger", "message"}  # no context applies


def test_a_request_logs_with_its_id_and_user(root_logging, capsys, client, users):
    logs.configure_logging("json")
    job = get_queue().enqueue("portal.jobs.periodic.recover_batches")
    login(client, "admin")
    token = _csrf_cookie(client.get(DASHBOARD))
    capsys.readouterr()
    response = client.post(f"/admin/rq/job/{job.id}/delete",
                           headers={"X-CSRFToken": token, "X-Request-ID": "ops-1"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in _lines(capsys.readouterr())]
    action = [line for line in lines if line["logger"] == "portal.metrics"]
    assert len(action) == 1, lines
    assert action[0]["request_id"] == "ops-1" and action[0]["user"] == "admin"
    assert f"/admin/rq/job/{job.id}/delete" in action[0]["message"]


def test_text_lines_stay_one_line_per_event(root_logging, capsys, app):
    logs.configure_logging("text")
    capsys.readouterr()
    log = logging.getLogger("portal.tests")
    with app.test_request_context("/", headers={"X-Request-ID": "req-text"}):
        try:
            raise ValueError("first\nsecond")
        except ValueError:
            log.exception("failed", extra={"batch_id": 5})
    (line,) = _lines(capsys.readouterr())
    assert " ERROR portal.tests: failed" in line
    assert "ValueError: first\\nsecond" in line and "Traceback" in line
    assert line.endswith("[request_id=req-text batch_id=5]")
