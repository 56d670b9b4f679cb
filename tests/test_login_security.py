"""Login without oracles (same work, same message) and with per-account and
per-address limits; cookies and client addresses behind an HTTPS proxy; GETs
that change nothing (the language switch and the task lock are POSTs); ids
beyond 32 bits in the task pages' query strings."""
import re
from datetime import timedelta

import pytest
from flask import Flask, request

from support import csrf_token, login
from portal.infra.extensions import db
from portal.models import Task, User
from portal.models.base import utcnow
from portal.workflow import engine

GOOD_FORM = {"amount": 1, "category": "Meals"}


def _alert(response):
    match = re.search(r'<div class="alert[^"]*"[^>]*>\s*(.*?)<button', response.get_data(as_text=True),
                      re.S)
    return match.group(1).strip() if match else None


@pytest.fixture
def hash_checks(monkeypatch):
    """Every password hash check, as (hash, password)."""
    from portal.models import users as user_models
    calls = []
    real = user_models.check_password_hash

    def counting(pwhash, password):
        calls.append((pwhash, password))
        return real(pwhash, password)
    monkeypatch.setattr(user_models, "check_password_hash", counting)
    return calls


# --- the same work and the same message for every refusal -------------------------------

def test_every_refusal_costs_one_hash_check_and_reads_the_same(app, client, factory, hash_checks):
    users = factory.standard()
    from portal.accounts import set_disabled
    set_disabled(users["carol"], True)
    db.session.commit()
    method = app.config["PASSWORD_HASH_METHOD"]
    messages = {}
    for case, name, password in [("unknown", "nobody", factory.PASSWORD),
                                 ("wrong password", "alice", "not-the-password"),
                                 ("disabled, right password", "carol", factory.PASSWORD)]:
        hash_checks.clear()
        response = login(client, name, password)
        assert response.status_code == 200, case
        assert len(hash_checks) == 1, case  # unknown names too: a dummy hash is checked
        assert hash_checks[0][0].startswith(method + "$"), case  # made with the configured method
        messages[case] = _alert(response)
    assert set(messages.values()) == {"Wrong user name or password."}
    assert client.get("/").status_code == 302

    hash_checks.clear()
    assert login(client, "alice").headers["Location"] == "/"
    assert len(hash_checks) == 1


def test_the_disabled_message_is_gone_in_chinese_too(client, factory):
    users = factory.standard()
    from portal.accounts import set_disabled
    set_disabled(users["carol"], True)
    db.session.commit()
    client.post("/lang/zh_CN", data={"csrf_token": csrf_token(client, "/login")})
    disabled = _alert(login(client, "carol"))
    unknown = _alert(login(client, "nobody"))
    assert disabled == unknown and disabled and "Wrong" not in disabled


# --- rate limits ------------------------------------------------------------------------

def _attempt(client, token, name, password, address):
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address})


def test_attempts_on_one_account_are_limited_from_any_address(app, client, factory):
    factory.standard()
    app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "3 per minute"
    try:
        token = csrf_token(client, "/login")
        # one attempt per address, the name spelled differently each time
        codes = [_attempt(client, token, name, "wrong", f"10.0.0.{i}").status_code
                 for i, name in enumerate(["alice", "Alice", " ALICE ", "alice"])]
        assert codes == [200, 200, 200, 429]
        refused = _attempt(client, token, "alice", factory.PASSWORD, "10.0.0.99")
        assert refused.status_code == 429
        assert "Too many login attempts" in refused.get_data(as_text=True)
        assert client.get("/").status_code == 302
        # another account from the same addresses is not held back
        assert _attempt(client, token, "bob", factory.PASSWORD, "10.0.0.1").status_code == 302
    finally:
        app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "5 per minute; 30 per hour"


def test_attempts_from_one_address_are_limited_across_accounts(app, client, factory):
    factory.standard()
    app.config["LOGIN_RATE_LIMIT"] = "3 per minute"
    try:
        token = csrf_token(client, "/login")
        codes = [_attempt(client, token, name, "wrong", "10.1.1.1").status_code
                 for name in ("alice", "bob", "carol", "sam")]
        assert codes == [200, 200, 200, 429]
        assert _attempt(client, token, "sam", factory.PASSWORD, "10.1.1.2").status_code == 302
    finally:
        app.config["LOGIN_RATE_LIMIT"] = "10 per minute"


# --- HTTPS and proxies ------------------------------------------------------------------

def _echo_app(**settings):
    """A bare app with the portal's proxy handling, answering what it sees."""
    from portal import _trust_proxy_headers
    bare = Flask("echo")
    bare.config.update(settings)
    _trust_proxy_headers(bare)
    bare.add_url_rule("/", "echo", lambda: {"addr": request.remote_addr,
                                            "secure": request.is_secure})
    return bare.test_client()


FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def test_forwarded_headers_are_trusted_only_when_configured():
    assert _echo_app().get("/", headers=FORWARDED).get_json() == {
        "addr": "127.0.0.1", "secure": False}
    assert _echo_app(PROXY_FIX_X_FOR=1, PROXY_FIX_X_PROTO=1).get(
        "/", headers=FORWARDED).get_json() == {"addr": "203.0.113.7", "secure": True}


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    from config import Config
    for name in ("SESSION_COOKIE_SECURE", "PROXY_FIX_X_FOR", "PROXY_FIX_X_PROTO",
                 "PROXY_FIX_X_HOST", "LOGIN_ACCOUNT_RATE_LIMIT", "SESSION_IDLE_HOURS"):
        monkeypatch.delenv(name, raising=False)
    defaults = Config.from_env(str(tmp_path))
    assert defaults["SESSION_COOKIE_SECURE"] is False and defaults["REMEMBER_COOKIE_SECURE"] is False
    assert defaults["PROXY_FIX_X_FOR"] == defaults["PROXY_FIX_X_PROTO"] == 0
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "1")
    monkeypatch.setenv("PROXY_FIX_X_FOR", "1")
    monkeypatch.setenv("PROXY_FIX_X_PROTO", "1")
    monkeypatch.setenv("LOGIN_ACCOUNT_RATE_LIMIT", "2 per minute")
    monkeypatch.setenv("SESSION_IDLE_HOURS", "4")
    settings = Config.from_env(str(tmp_path))
    assert settings["SESSION_COOKIE_SECURE"] is True and settings["REMEMBER_COOKIE_SECURE"] is True
    assert settings["PROXY_FIX_X_FOR"] == 1 and settings["PROXY_FIX_X_PROTO"] == 1
    assert settings["LOGIN_ACCOUNT_RATE_LIMIT"] == "2 per minute"
    assert settings["SESSION_IDLE_HOURS"] == 4


def test_the_session_cookie_is_secure_when_configured(app, client, factory):
    factory.standard()
    app.config["SESSION_COOKIE_SECURE"] = True
    try:
        token = csrf_token(client, "https://localhost/login")
        response = client.post("https://localhost/login", data={
            "username": "alice", "password": factory.PASSWORD, "csrf_token": token},
            headers={"Referer": "https://localhost/login"})  # Flask-WTF checks it over HTTPS
        assert response.status_code == 302
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("session=") and "; Secure" in cookie and "HttpOnly" in cookie
    finally:
        app.config["SESSION_COOKIE_SECURE"] = False


# --- the language switch is a POST -------------------------------------------------------

def test_a_get_cannot_switch_the_language(client, factory):
    users = factory.standard()
    login(client, "alice")
    assert client.get("/lang/zh_CN?next=/").status_code == 405
    with client.session_transaction() as session:
        assert "lang" not in session
    db.session.refresh(users["alice"])
    assert users["alice"].locale is None
    assert "My tasks" in client.get("/").get_data(as_text=True)
    # and a POST needs the CSRF token
    assert client.post("/lang/zh_CN", data={"next": "/"}).status_code == 400
    db.session.refresh(users["alice"])
    assert users["alice"].locale is None
    assert "My tasks" in client.get("/").get_data(as_text=True)


def _language_forms(html):
    return dict(re.findall(r'<form method="post" action="/lang/(\w+)"[^>]*>.*?'
                           r'name="next" value="([^"]*)"', html, re.S))


def test_the_switch_goes_back_to_the_page_it_was_on(client, factory):
    factory.standard(tasks=1)
    task_id = db.session.execute(db.select(Task.id)).scalar_one()
    # anonymous, on the login page
    page = client.get("/login?next=%2Fbatches").get_data(as_text=True)
    assert _language_forms(page) == {"en": "/login?next=%2Fbatches",
                                     "zh_CN": "/login?next=%2Fbatches"}
    response = client.post("/lang/zh_CN", data={"csrf_token": csrf_token(client, "/login"),
                                                "next": "/login?next=%2Fbatches"})
    assert response.headers["Location"] == "/login?next=%2Fbatches"
    assert "登录" in client.get("/login").get_data(as_text=True)
    # a page that answered a POST: its GET address, without the posted body
    failed = client.post("/login", data={"username": "alice", "password": "wrong",
                                         "csrf_token": csrf_token(client, "/login")})
    assert set(_language_forms(failed.get_data(as_text=True)).values()) == {"/login"}
    login(client, "alice")
    token = csrf_token(client, "/")
    refused = client.post(f"/tasks/{task_id}/decide", data={
        "csrf_token": token, "action": "approve", "amount": "", "category": ""})
    assert refused.status_code == 422
    assert set(_language_forms(refused.get_data(as_text=True)).values()) == {f"/tasks/{task_id}"}
    # a next that only takes a POST, or another site, is not followed
    for target in ("/logout", f"/tasks/{task_id}/decide", "//evil.example/", "https://evil.example/"):
        response = client.post("/lang/en", data={"csrf_token": token, "next": target})
        assert response.headers["Location"] == "/", target
    alice = db.session.execute(db.select(User).where(User.username == "alice")).scalar_one()
    db.session.refresh(alice)
    assert alice.locale == "en"


# --- opening a task takes no lock; "Take this task" does -----------------------------------

def _finance_task(users):
    """A finance task (role:finance) after alice approved the manager step."""
    task = db.session.execute(db.select(Task).order_by(Task.id)).scalars().first()
    engine.decide(task.id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    return task, task.instance.tasks[-1]


def test_opening_a_task_takes_no_lock_and_the_approver_can_still_recall(client, factory):
    users = factory.standard(tasks=1)
    manager_task, finance_task = _finance_task(users)
    login(client, "bob")
    page = client.get(f"/tasks/{finance_task.id}").get_data(as_text=True)
    db.session.refresh(finance_task)
    assert finance_task.lock_holder_id is None and finance_task.lock_expires_at is None
    assert 'id="take-form"' in page and 'id="decide-form"' in page
    # bob only looked: alice may still take the instance back
    engine.recall(manager_task.id, users["alice"])
    db.session.commit()
    db.session.refresh(finance_task)
    assert finance_task.status == "recalled"


def test_taking_a_task_is_a_post_with_csrf(app, client, factory):
    users = factory.standard(tasks=1)
    _manager_task, finance_task = _finance_task(users)
    factory.user("dave", workflow_roles="finance")
    login(client, "bob")
    assert client.get(f"/tasks/{finance_task.id}/take").status_code == 405
    assert client.post(f"/tasks/{finance_task.id}/take").status_code == 400
    db.session.refresh(finance_task)
    assert finance_task.lock_holder_id is None

    token = csrf_token(client, f"/tasks/{finance_task.id}")
    response = client.post(f"/tasks/{finance_task.id}/take", data={"csrf_token": token},
                           follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "You hold this task for 15 minutes" in page
    assert 'id="held-by-me"' in page and 'id="take-form"' not in page
    db.session.refresh(finance_task)
    assert finance_task.lock_holder_id == users["bob"].id
    minutes = app.config["TASK_LOCK_MINUTES"]
    assert utcnow() < finance_task.lock_expires_at <= utcnow() + timedelta(minutes=minutes)

    client.post("/logout", data={"csrf_token": token})
    login(client, "dave")
    page = client.get(f"/tasks/{finance_task.id}").get_data(as_text=True)
    assert 'id="take-form"' not in page and "The task is locked by someone else." in page
    response = client.post(f"/tasks/{finance_task.id}/take",
                           data={"csrf_token": csrf_token(client, "/")}, follow_redirects=True)
    assert "The task is locked by someone else." in response.get_data(as_text=True)
    db.session.refresh(finance_task)
    assert finance_task.lock_holder_id == users["bob"].id


def test_someone_elses_task_cannot_be_taken(client, factory):
    factory.standard(tasks=1)
    task = db.session.execute(db.select(Task)).scalar_one()
    login(client, "carol")
    response = client.post(f"/tasks/{task.id}/take", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 404
    db.session.refresh(task)
    assert task.lock_holder_id is None


# --- ids beyond 32 bits ------------------------------------------------------------------

@pytest.mark.parametrize("query", ["node_id", "page"])
@pytest.mark.parametrize("value", [str(2**31), "9" * 25, "%C2%B2", "-1"])
def test_my_tasks_query_numbers_out_of_range_are_a_400(client, factory, query, value):
    factory.standard(tasks=1)
    login(client, "alice")
    response = client.get(f"/?{query}={value}&q=Claim")
    assert response.status_code == 400
    assert f"{query} must be a whole number from 1 to 2147483647." in response.get_data(as_text=True)


def test_task_ids_beyond_32_bits_are_not_found(client, factory):
    factory.standard(tasks=1)
    login(client, "alice")
    token = csrf_token(client, "/")
    for number in (2**31, 10**22):
        assert client.get(f"/tasks/{number}").status_code == 404
        assert client.post(f"/tasks/{number}/take", data={"csrf_token": token}).status_code == 404
    assert client.get("/?node_id=2147483647").status_code == 200  # the largest id is fine


def test_the_password_page_shares_the_accounts_budget(app, client, factory):
    factory.standard()
    app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "3 per minute"
    try:
        login(client, "alice")  # 1
        token = csrf_token(client, "/account/password")
        guess = {"csrf_token": token, "new_password": "brand-new-pass-9",
                 "confirm": "brand-new-pass-9"}
        codes = [client.post("/account/password", data=dict(guess, old_password=f"guess-{i}"),
                             environ_base={"REMOTE_ADDR": f"10.2.0.{i}"}).status_code
                 for i in range(3)]
        assert codes == [400, 400, 429]  # 2, 3, then over the budget
        refused = client.post("/account/password", data=dict(guess, old_password=factory.PASSWORD))
        assert refused.status_code == 429
        db.session.rollback()
        alice = db.session.execute(db.select(User).where(User.username == "alice")).scalar_one()
        assert alice.check_password(factory.PASSWORD)
        other = app.test_client()
        assert login(other, "ALICE").status_code == 429  # and the login page is held back too
    finally:
        app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "5 per minute; 30 per hour"
