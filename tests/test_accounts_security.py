"""Sessions end on the server (logout, password change, reset, disable, idle),
passwords are changed and reset, API tokens expire and are revoked one by one
(CLI and admin page)."""
import re
from datetime import timedelta

import pytest

from support import csrf_token, login
from portal.infra.extensions import db
from portal.models import ApiToken, User
from portal.models.base import utcnow

NEW_PASSWORD = "brand-new-pass-9"


def _copy_of(client, app):
    """A second browser holding a copy of ``client``'s session cookie (a replay)."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def _logged_in(client):
    return client.get("/").status_code == 200


def _user(name):
    db.session.rollback()
    return db.session.execute(db.select(User).where(User.username == name)).scalar_one()


def _digest(secret):
    from portal.models.users import digest
    return digest(secret)


def _sessions(name):
    from portal.models import UserSession
    db.session.rollback()
    return db.session.execute(db.select(UserSession).join(User)
                              .where(User.username == name)).scalars().all()


# --- sessions ------------------------------------------------------------------------------

def test_the_cookie_names_a_session_row_by_a_key_whose_digest_alone_is_stored(client, factory):
    factory.standard()
    login(client, "alice")
    with client.session_transaction() as session:
        key = session["_user_id"]
    assert key != str(_user("alice").id) and len(key) >= 40
    rows = _sessions("alice")
    assert len(rows) == 1 and rows[0].key_hash == _digest(key) != key


def test_a_copied_cookie_is_logged_out_with_its_session(app, client, factory):
    factory.standard()
    login(client, "alice")
    replay = _copy_of(client, app)
    assert _logged_in(replay)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert not _logged_in(client)
    assert not _logged_in(replay)
    assert _sessions("alice") == []


def test_logging_out_ends_only_that_session(app, client, factory):
    factory.standard()
    login(client, "alice")
    laptop = app.test_client()
    login(laptop, "alice")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert not _logged_in(client) and _logged_in(laptop)


def test_changing_ones_password_ends_every_other_session(app, client, factory):
    factory.standard()
    login(client, "alice")
    laptop = app.test_client()
    login(laptop, "alice")
    replay = _copy_of(laptop, app)
    home = client.get("/").get_data(as_text=True)
    assert re.search(r'<a[^>]*id="account-link"[^>]*href="/account/password"[^>]*>alice</a>', home)
    page = client.get("/account/password").get_data(as_text=True)
    assert 'name="old_password"' in page and 'autocomplete="current-password"' in page

    token = csrf_token(client, "/account/password")
    wrong = client.post("/account/password", data={
        "csrf_token": token, "old_password": "not-it", "new_password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD})
    assert wrong.status_code == 400
    assert "This is not your current password." in wrong.get_data(as_text=True)
    short = client.post("/account/password", data={
        "csrf_token": token, "old_password": factory.PASSWORD, "new_password": "short",
        "confirm": "short"})
    assert short.status_code == 400 and "At least 8 characters." in short.get_data(as_text=True)
    assert _user("alice").check_password(factory.PASSWORD)
    assert _logged_in(laptop) and _logged_in(replay)  # refused changes end nothing

    response = client.post("/account/password", data={
        "csrf_token": token, "old_password": factory.PASSWORD, "new_password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert _user("alice").check_password(NEW_PASSWORD)
    assert _logged_in(client)
    assert not _logged_in(laptop) and not _logged_in(replay)
    assert len(_sessions("alice")) == 1


def test_password_change_needs_a_login_and_a_csrf_token(client, factory):
    factory.standard()
    assert client.get("/account/password").status_code == 302
    login(client, "alice")
    response = client.post("/account/password", data={
        "old_password": factory.PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 400
    assert _user("alice").check_password(factory.PASSWORD)


def test_an_admin_reset_ends_every_session_of_the_user(app, client, factory):
    users = factory.standard()
    carol = app.test_client()
    login(carol, "carol")
    replay = _copy_of(carol, app)
    login(client, "admin")
    page = client.get(f"/admin/users/{users['carol'].id}").get_data(as_text=True)
    assert 'id="reset-password-form"' in page and "Open sessions: 1" in page
    token = csrf_token(client, "/admin/users")
    short = client.post(f"/admin/users/{users['carol'].id}/password",
                        data={"csrf_token": token, "password": "short"})
    assert short.status_code == 400 and "At least 8 characters." in short.get_data(as_text=True)
    assert _logged_in(carol)

    response = client.post(f"/admin/users/{users['carol'].id}/password",
                           data={"csrf_token": token, "password": NEW_PASSWORD})
    assert response.status_code == 302
    assert not _logged_in(carol) and not _logged_in(replay)
    assert login(app.test_client(), "carol", NEW_PASSWORD).headers["Location"] == "/"
    # one's own password is changed on the account page (it asks for the current one)
    own = client.post(f"/admin/users/{users['admin'].id}/password",
                      data={"csrf_token": token, "password": NEW_PASSWORD})
    assert own.headers["Location"] == "/account/password"
    assert _user("admin").check_password(factory.PASSWORD) and _logged_in(client)


def test_disabling_ends_sessions_for_good(app, client, factory):
    users = factory.standard()
    carol = app.test_client()
    login(carol, "carol")
    replay = _copy_of(carol, app)
    login(client, "admin")
    token = csrf_token(client, "/admin/users")
    client.post(f"/admin/users/{users['carol'].id}/disable", data={"csrf_token": token})
    assert not _logged_in(carol) and not _logged_in(replay)
    client.post(f"/admin/users/{users['carol'].id}/enable", data={"csrf_token": token})
    # enabled again, the old cookies stay logged out; a new login works
    assert not _logged_in(carol) and not _logged_in(replay)
    assert _sessions("carol") == []
    login(carol, "carol")
    assert _logged_in(carol)


def test_an_idle_session_ends_and_use_is_recorded(app, client, factory):
    factory.standard()
    login(client, "alice")
    row = _sessions("alice")[0]
    row.last_seen_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    assert _logged_in(client)
    assert _sessions("alice")[0].last_seen_at > utcnow() - timedelta(minutes=1)

    login(app.test_client(), "bob")
    idle = utcnow() - timedelta(hours=app.config["SESSION_IDLE_HOURS"], minutes=1)
    rows = _sessions("alice") + _sessions("bob")  # (each call ends the transaction)
    for row in rows:
        row.last_seen_at = idle
    db.session.commit()
    assert not _logged_in(client)
    login(client, "alice")  # the next login, anyone's, purges idle rows
    assert len(_sessions("alice")) == 1 and _logged_in(client)
    assert _sessions("bob") == []


# --- API tokens ----------------------------------------------------------------------------

def _nodes(client, token):
    return client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    db.session.rollback()
    return result


def test_cli_names_lists_expires_and_revokes_tokens(runner, client, factory):
    factory.standard()
    first = _run(runner, "user", "token", "alice", "--name", "nightly import").output.strip()
    second = _run(runner, "user", "token", "alice", "--expires-days", "30").output.strip()
    assert len(first) > 30 and len(second) > 30
    assert _nodes(client, first).status_code == 200 and _nodes(client, second).status_code == 200
    rows = db.session.execute(db.select(ApiToken).order_by(ApiToken.id)).scalars().all()
    assert rows[0].name == "nightly import" and rows[0].expires_at is None
    assert timedelta(days=29) < rows[1].expires_at - utcnow() <= timedelta(days=30)

    listing = _run(runner, "user", "tokens", "alice")
    assert listing.exit_code == 0
    lines = listing.output.strip().splitlines()
    assert lines[1].split("\t")[:3] == [str(rows[0].id), "active", "nightly import"]
    assert lines[2].split("\t")[:3] == [str(rows[1].id), "active", "-"]
    assert first not in listing.output and rows[0].token_hash not in listing.output

    revoked = _run(runner, "user", "revoke-token", str(rows[0].id))
    assert revoked.exit_code == 0 and f"token {rows[0].id} of alice revoked" in revoked.output
    assert _nodes(client, first).status_code == 401
    assert _nodes(client, first).get_json() == {"error": "A valid API token is required."}
    assert _nodes(client, second).status_code == 200  # one by one
    assert "\trevoked\t" in _run(runner, "user", "tokens", "alice").output

    for bad in (["user", "revoke-token", "999999"], ["user", "revoke-token", str(2**40)]):
        result = _run(runner, *bad)
        assert result.exit_code != 0 and "No API token" in result.output
    for days in ("0", "-3", "99999"):
        result = _run(runner, "user", "token", "alice", "--expires-days", days)
        assert result.exit_code != 0 and "number of days" in result.output
    assert _run(runner, "user", "tokens", "carol").output.strip() == "carol has no API tokens"
    assert db.session.query(ApiToken).count() == 2


def test_an_expired_token_gets_401(client, factory):
    users = factory.standard()
    from portal.accounts import create_token
    row, token = create_token(users["alice"], "short lived", expires_days=1)
    db.session.commit()
    assert _nodes(client, token).status_code == 200
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = _nodes(client, token)
    assert response.status_code == 401 and "error" in response.get_json()


def test_a_revoked_token_stays_revoked_when_its_user_is_enabled_again(runner, client, factory):
    users = factory.standard()
    revoked, kept = factory.token(users["carol"]), factory.token(users["carol"])
    revoked_id = db.session.execute(db.select(ApiToken.id).where(
        ApiToken.token_hash == ApiToken.digest(revoked))).scalar_one()
    assert _run(runner, "user", "revoke-token", str(revoked_id)).exit_code == 0
    assert _run(runner, "user", "disable", "carol").exit_code == 0
    assert _nodes(client, kept).status_code == 401
    assert db.session.query(ApiToken).count() == 2  # disabling deletes no token
    assert _run(runner, "user", "enable", "carol").exit_code == 0
    assert _nodes(client, kept).status_code == 200
    assert _nodes(client, revoked).status_code == 401


def test_admin_lists_and_revokes_tokens_one_by_one(client, factory):
    users = factory.standard()
    from portal.accounts import create_token
    first_row, first = create_token(users["bob"], "<b>sync</b>")
    second_row, second = create_token(users["bob"], "", expires_days=7)
    carol_row, carol_token = create_token(users["carol"], "carol's")
    db.session.commit()
    login(client, "admin")
    users_page = client.get("/admin/users").get_data(as_text=True)
    assert f'href="/admin/users/{users["bob"].id}"' in users_page
    page = client.get(f"/admin/users/{users['bob'].id}").get_data(as_text=True)
    assert page.count("data-token-id=") == 2
    assert "&lt;b&gt;sync&lt;/b&gt;" in page and "<b>sync</b>" not in page
    assert first not in page and first_row.token_hash not in page

    token = csrf_token(client, "/admin/users")
    # a token is revoked through its own user's page only
    wrong_user = client.post(f"/admin/users/{users['bob'].id}/tokens/{carol_row.id}/revoke",
                             data={"csrf_token": token})
    assert wrong_user.status_code == 404
    assert _nodes(client, carol_token).status_code == 200
    response = client.post(f"/admin/users/{users['bob'].id}/tokens/{first_row.id}/revoke",
                           data={"csrf_token": token})
    assert response.status_code == 302
    assert _nodes(client, first).status_code == 401 and _nodes(client, second).status_code == 200
    page = client.get(f"/admin/users/{users['bob'].id}").get_data(as_text=True)
    assert re.search(rf'data-token-id="{first_row.id}" data-status="revoked"', page)
    assert re.search(rf'data-token-id="{second_row.id}" data-status="active"', page)
    # not without a CSRF token, and not for a supervisor
    assert client.post(f"/admin/users/{users['bob'].id}/tokens/{second_row.id}/revoke").status_code == 400
    client.post("/logout", data={"csrf_token": token})
    login(client, "sam")
    assert client.post(f"/admin/users/{users['bob'].id}/tokens/{second_row.id}/revoke",
                       data={"csrf_token": csrf_token(client, "/")}).status_code == 403
    assert client.get(f"/admin/users/{users['bob'].id}").status_code == 403
    assert _nodes(client, second).status_code == 200


@pytest.mark.parametrize("number", [2**31, 10**22])
def test_admin_ids_beyond_32_bits_never_reach_sql(client, factory, number):
    factory.standard()
    login(client, "admin")
    assert client.get(f"/admin/processes/{number}").status_code == 404
    # also where a route of the same shape takes another method (POST updates a user)
    assert client.get(f"/admin/users/{number}").status_code == 404
    assert client.get(f"/admin/instances?page={number}").status_code == 400
    assert client.get(f"/admin/instances?page={number}&status=running").status_code == 400


def test_admin_post_ids_beyond_32_bits_are_not_found(client, factory):
    users = factory.standard()
    login(client, "admin")
    token = csrf_token(client, "/admin/users")
    for url in (f"/admin/users/{users['bob'].id}/tokens/2147483648/revoke",
                "/admin/users/2147483648/password", "/admin/users/2147483648/disable"):
        assert client.post(url, data={"csrf_token": token, "password": NEW_PASSWORD}).status_code == 404, url
