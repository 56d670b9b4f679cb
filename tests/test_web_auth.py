"""Login, logout, disabled users, the login rate limit, CSRF and the language switch."""
from support import csrf_token, login


def test_login_then_logout(client, factory):
    factory.standard()
    response = client.get("/instances/1")  # not logged in: sent to the login page
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Finstances%2F1"
    assert "Please log in to see this page." in client.get("/login").get_data(as_text=True)
    response = login(client, "alice")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "alice" in page and "My tasks" in page

    token = csrf_token(client, "/")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused(client, factory):
    factory.standard()
    response = login(client, "alice", "not-the-password")
    assert response.status_code == 200
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_login_redirects_to_local_next_only(client, factory):
    factory.standard()
    token = csrf_token(client, "/login")
    response = client.post("/login?next=//evil.example/x", data={
        "username": "alice", "password": factory.PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    token = csrf_token(client, "/login")
    response = client.post("/login?next=/batches", data={
        "username": "alice", "password": factory.PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/batches"


def test_disabled_user_cannot_log_in(client, factory):
    users = factory.standard()
    from portal.accounts import set_disabled
    from portal.infra.extensions import db
    set_disabled(users["carol"], True)
    db.session.commit()
    response = login(client, "carol")
    assert response.status_code == 200
    # the same message as a wrong password: a disabled account is not revealed
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert "disabled" not in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_disabling_a_logged_in_user_ends_their_session(client, factory):
    users = factory.standard()
    login(client, "carol")
    assert client.get("/").status_code == 200
    from portal.accounts import set_disabled
    from portal.infra.extensions import db
    set_disabled(users["carol"], True)
    db.session.commit()
    assert client.get("/").status_code == 302


def test_login_is_rate_limited(app, client, factory):
    factory.standard()
    app.config["LOGIN_RATE_LIMIT"] = "3 per minute"
    try:
        token = csrf_token(client, "/login")
        codes = [client.post("/login", data={"username": "alice", "password": "wrong",
                                             "csrf_token": token}).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        page = client.post("/login", data={"username": "alice", "password": factory.PASSWORD,
                                           "csrf_token": token})
        assert page.status_code == 429
        assert "Too many login attempts" in page.get_data(as_text=True)
        assert "<html" in page.get_data(as_text=True)  # a readable page, not a bare error
        assert client.get("/login").status_code == 200  # only posting is limited
    finally:
        app.config["LOGIN_RATE_LIMIT"] = "10 per minute"


def test_post_without_csrf_token_is_rejected(client, factory):
    factory.standard()
    response = client.post("/login", data={"username": "alice", "password": factory.PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # not logged in
    login(client, "alice")
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still logged in


def _switch_language(client, code, next_url=None, page="/login"):
    """The navbar's language form on ``page``: a POST with the CSRF token."""
    data = {"csrf_token": csrf_token(client, page)}
    if next_url is not None:
        data["next"] = next_url
    return client.post(f"/lang/{code}", data=data)


def test_language_switch_sets_session_and_redirects_locally(client, factory):
    factory.standard()
    response = _switch_language(client, "zh_CN", "/login")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    with client.session_transaction() as session:
        assert session["lang"] == "zh_CN"
    assert "登录" in client.get("/login").get_data(as_text=True)
    response = _switch_language(client, "en", "https://evil.example/")
    assert response.headers["Location"] == "/login"  # not logged in: the login page
    assert _switch_language(client, "fr").status_code == 404


def test_language_survives_login_and_is_remembered_for_the_user(client, factory):
    users = factory.standard()
    _switch_language(client, "zh_CN")
    login(client, "alice")
    assert "我的待办" in client.get("/").get_data(as_text=True)
    _switch_language(client, "en", page="/")
    from portal.infra.extensions import db
    db.session.refresh(users["alice"])
    assert users["alice"].locale == "en"


def test_the_first_visit_to_the_home_page_goes_to_login_without_a_warning(client, factory):
    factory.standard()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert "Please log in" not in client.get(response.headers["Location"]).get_data(as_text=True)
    deep = client.get("/batches")
    assert "next=%2Fbatches" in deep.headers["Location"]
    assert "Please log in to see this page." in client.get(deep.headers["Location"]).get_data(
        as_text=True)


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"


def test_error_pages_speak_the_readers_language(client, factory):
    """403, 404 and 405 in 简体中文, and the 403 without the framework's English text."""
    factory.standard()
    login(client, "alice")
    client.post("/lang/zh_CN", data={"csrf_token": csrf_token(client, "/")})
    forbidden = client.get("/admin/users")
    assert forbidden.status_code == 403
    text = forbidden.get_data(as_text=True)
    assert "您无权执行此操作。" in text and "You don't have the permission" not in text
    assert "未找到。" in client.get("/no-such-page").get_data(as_text=True)
    assert "此处不允许此操作。" in client.get("/logout").get_data(as_text=True)
