"""Links in e-mails when PORTAL_URL is unset: the address the portal is served at (``PORT``), and a warning
at the start of ``make run`` (the launcher) and of a worker."""
import pytest

from portal import launcher
from portal.notices import texts


@pytest.fixture
def no_portal_url(app, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_URL", "")
    monkeypatch.setitem(app.config, "SERVER_NAME", None)
    monkeypatch.setitem(app.config, "PORT", 8123)


def test_the_port_is_a_setting(monkeypatch, tmp_path):
    from config import Config
    monkeypatch.delenv("PORT", raising=False)
    assert Config.from_env(str(tmp_path))["PORT"] == 5000
    monkeypatch.setenv("PORT", "8123")
    assert Config.from_env(str(tmp_path))["PORT"] == 8123


def test_links_use_the_served_port_when_portal_url_is_unset(app, no_portal_url):
    assert texts.portal_url() == "http://127.0.0.1:8123"
    assert texts.external_url("batches.show", batch_id=3) == "http://127.0.0.1:8123/batches/3"


def test_portal_url_wins_and_says_nothing(app, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_URL", "https://portal.example.com/")
    assert texts.external_url("batches.show", batch_id=3) == "https://portal.example.com/batches/3"
    assert texts.portal_url_warning() is None


def test_the_warning_names_the_setting_and_the_address_used(app, no_portal_url):
    warning = texts.portal_url_warning()
    assert "PORTAL_URL is unset" in warning and "http://127.0.0.1:8123" in warning


def test_make_run_warns_once_and_gives_its_children_the_address_it_serves(app, no_portal_url, monkeypatch):
    monkeypatch.delenv("PORTAL_URL", raising=False)
    env, warning = launcher.child_environment(app, 8200)
    assert env["PORTAL_URL"] == "http://127.0.0.1:8200" and env["PORT"] == "8200"
    assert "PORTAL_URL is unset" in warning and "http://127.0.0.1:8200" in warning


def test_make_run_keeps_a_configured_portal_url(app, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_URL", "https://portal.example.com")
    monkeypatch.setenv("PORTAL_URL", "https://portal.example.com")
    env, warning = launcher.child_environment(app, 8200)
    assert env["PORTAL_URL"] == "https://portal.example.com" and warning is None


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if "PORTAL_URL" in r.getMessage()]


def test_a_worker_warns_once_at_start(runner, no_portal_url, caplog):
    result = runner.invoke(args=["worker", "--burst"])
    assert result.exit_code == 0, result.output
    [warning] = _warnings(caplog)
    assert "PORTAL_URL is unset" in warning and "http://127.0.0.1:8123" in warning


def test_a_worker_with_portal_url_does_not_warn(runner, app, monkeypatch, caplog):
    monkeypatch.setitem(app.config, "PORTAL_URL", "https://portal.example.com")
    result = runner.invoke(args=["worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert _warnings(caplog) == []
