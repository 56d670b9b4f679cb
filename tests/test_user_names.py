"""User names that differ only by case or character width name the same person to a reader: a new name equal to
an existing one after NFKC and case folding is refused, by one rule for the admin page and the CLI."""
import pytest

from support import Factory, csrf_token, login
from portal import accounts
from portal.errors import ValidationFailed
from portal.infra.extensions import db
from portal.models import User

LOOKALIKES = ["Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ", " alice ", "alice"]


def _names():
    db.session.rollback()
    return sorted(db.session.execute(db.select(User.username)).scalars())


@pytest.fixture
def alice(factory):
    return factory.user("alice")


@pytest.mark.parametrize("name", LOOKALIKES)
def test_the_service_refuses_a_name_equal_after_case_folding_and_nfkc(alice, name):
    with pytest.raises(ValidationFailed) as refused:
        accounts.create_user(name, Factory.PASSWORD)
    assert "alice" in refused.value.errors["username"] or "taken" in refused.value.errors["username"]
    assert _names() == ["alice"]


def test_the_rule_is_one_function(app):
    assert accounts.username_key("ＡＬＩＣＥ") == accounts.username_key("alice") == "alice"
    assert accounts.username_key("Straße") == accounts.username_key("STRASSE")
    assert accounts.username_key("bob") != accounts.username_key("alice")


@pytest.mark.parametrize("name", ["ALICE", "ａｌｉｃｅ"])
def test_the_cli_refuses_a_lookalike_with_a_clear_message(runner, alice, name):
    result = runner.invoke(args=["user", "create", name, "--password", Factory.PASSWORD])
    db.session.rollback()
    assert result.exit_code != 0
    assert "differs from the existing user alice only by case or character width" in result.output
    assert _names() == ["alice"]


@pytest.mark.parametrize("name", ["Alice", "ALICE"])
def test_the_admin_page_refuses_a_lookalike_with_the_same_message(client, factory, name):
    factory.standard()
    login(client, "admin")
    response = client.post("/admin/users", data={
        "csrf_token": csrf_token(client, "/admin/users"), "username": name, "role": "user",
        "password": "long-enough"})
    assert response.status_code == 400
    assert "differs from the existing user alice only by case or character width" in response.get_data(as_text=True)
    assert db.session.execute(db.select(db.func.count(User.id)).where(User.username == name)).scalar() == 0


def test_existing_lookalikes_are_not_renamed_and_still_log_in(client, factory):
    factory.user("alice")
    made_before_the_rule = User(username="Alice", role="user", workflow_roles="")
    made_before_the_rule.set_password(Factory.PASSWORD)
    db.session.add(made_before_the_rule)
    db.session.commit()
    with pytest.raises(ValidationFailed):
        accounts.create_user("ALICE", Factory.PASSWORD)
    assert _names() == ["Alice", "alice"]
    assert login(client, "Alice").status_code == 302


def test_other_names_are_still_accepted(alice):
    accounts.create_user("alice2", Factory.PASSWORD)
    accounts.create_user("al.ice", Factory.PASSWORD)
    db.session.commit()
    assert _names() == ["al.ice", "alice", "alice2"]
