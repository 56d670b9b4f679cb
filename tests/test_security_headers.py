"""Security headers on pages and API answers; the session cookie's flags."""
import pytest

from support import login


def _assert_security_headers(response):
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("url", ["/login", "/static/js/portal.js", "/no-such-page"])
def test_headers_on_anonymous_answers(client, url):
    _assert_security_headers(client.get(url))


def test_headers_on_logged_in_pages(client, factory):
    factory.standard(tasks=1)
    login(client, "admin")
    for url in ["/", "/tasks/1", "/instances/1", "/admin/users", "/admin/health"]:
        response = client.get(url)
        assert response.status_code == 200, url
        _assert_security_headers(response)


def test_headers_on_api_answers(client, factory):
    users = factory.standard()
    response = client.get("/api/v1/nodes")
    assert response.status_code == 401 and response.is_json
    _assert_security_headers(response)
    token = factory.token(users["alice"])
    response = client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
    assert response.is_json
    _assert_security_headers(response)


def test_session_cookie_is_httponly_and_samesite(client, factory):
    factory.standard()
    response = login(client, "alice")
    cookie = next(value for value in response.headers.getlist("Set-Cookie")
                  if value.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie or "SameSite=Strict" in cookie


def test_pages_have_no_inline_scripts_or_styles(client, factory):
    factory.standard(tasks=1)
    login(client, "alice")
    for url in ["/", "/tasks/1", "/instances/1"]:
        page = client.get(url).get_data(as_text=True)
        assert "<script>" not in page and " style=" not in page and "onclick=" not in page, url
