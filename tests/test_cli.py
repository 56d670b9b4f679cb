"""The Flask CLI of CONTRACT section 3: demo, process load, user create/token/disable/enable."""
import json

from portal.infra.extensions import db
from portal.models import ApiToken, ProcessDefinition, Task, User
from support import EXPENSE


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    db.session.rollback()
    return result


def test_demo_is_idempotent(runner):
    first = _run(runner, "demo")
    assert first.exit_code == 0, first.output
    assert "demo logins" in first.output
    counts = (db.session.query(User).count(), db.session.query(Task).count(),
              db.session.query(ProcessDefinition).count())
    assert counts[0] == 5 and counts[1] >= 200 and counts[2] == 3
    second = _run(runner, "demo")
    assert second.exit_code == 0
    assert (db.session.query(User).count(), db.session.query(Task).count(),
            db.session.query(ProcessDefinition).count()) == counts


def test_process_load_versions_changed_definitions(runner, factory, tmp_path):
    factory.user("alice")
    path = tmp_path / "expense.json"
    path.write_text(json.dumps(EXPENSE))
    assert "version 1 loaded" in _run(runner, "process", "load", str(path)).output
    assert "version 1 unchanged" in _run(runner, "process", "load", str(path)).output
    path.write_text(json.dumps(dict(EXPENSE, name="Expense claim (2027)")))
    assert "version 2 loaded" in _run(runner, "process", "load", str(path)).output
    assert db.session.query(ProcessDefinition).filter_by(key="expense").count() == 2


def test_process_load_rejects_bad_files(runner, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = _run(runner, "process", "load", str(broken))
    assert result.exit_code != 0 and "The file is not valid JSON" in result.output
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"key": "x", "name": "X", "nodes": [{"key": "a", "assignee": "?"}]}))
    result = _run(runner, "process", "load", str(invalid))
    assert result.exit_code != 0 and "nodes[0].assignee" in result.output
    assert db.session.query(ProcessDefinition).count() == 0


def test_user_create_token_disable_enable(runner, client):
    result = _run(runner, "user", "create", "erin", "--role", "supervisor", "--password", "secret-pass-1")
    assert result.exit_code == 0, result.output
    erin = db.session.query(User).filter_by(username="erin").one()
    assert erin.role == "supervisor" and erin.check_password("secret-pass-1")
    assert erin.password_hash != "secret-pass-1"
    duplicate = _run(runner, "user", "create", "erin", "--password", "secret-pass-1")
    assert duplicate.exit_code != 0 and "taken" in duplicate.output

    token = _run(runner, "user", "token", "erin").output.strip()
    assert len(token) > 30
    stored = db.session.query(ApiToken).one()
    assert stored.token_hash == ApiToken.digest(token) and token not in stored.token_hash
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/nodes", headers=auth).status_code == 200

    assert _run(runner, "user", "disable", "erin").exit_code == 0
    assert client.get("/api/v1/nodes", headers=auth).status_code == 401
    assert _run(runner, "user", "enable", "erin").exit_code == 0
    assert client.get("/api/v1/nodes", headers=auth).status_code == 200
    unknown = _run(runner, "user", "token", "nobody")
    assert unknown.exit_code != 0 and "No user named nobody" in unknown.output


def test_weak_password_is_refused(runner):
    result = _run(runner, "user", "create", "frank", "--password", "short")
    assert result.exit_code != 0 and "8 characters" in result.output
    assert db.session.query(User).count() == 0


def test_process_load_refuses_a_deeply_nested_file_with_a_clear_error(runner, tmp_path):
    for text in ("[" * 200000, '{"key": "x", "name": "X", "nodes": ' + "[" * 100 + "]" * 100 + "}"):
        nested = tmp_path / "nested.json"
        nested.write_text(text)
        result = _run(runner, "process", "load", str(nested))
        assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
        assert "nested more than 32 levels" in result.output
    assert db.session.query(ProcessDefinition).count() == 0


FORM_KEY_BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="inspect" name="Inspect" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:userTask id="look" name="Look" camunda:assignee="alice" camunda:formKey="embedded:app:look.html">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="note" label="Note" type="string" />
      </camunda:formData></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:endEvent id="end" />
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="look" />
    <bpmn:sequenceFlow id="f1" sourceRef="look" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""
FORM_KEY_WARNING = ("User task 'Look': formKey 'embedded:app:look.html' is not rendered; the task uses its "
                    "form fields.")


def test_process_load_lists_an_ignored_form_key_as_a_warning(runner, factory, tmp_path):
    factory.user("alice")
    path = tmp_path / "inspect.bpmn"
    path.write_bytes(FORM_KEY_BPMN)
    result = _run(runner, "process", "load", str(path))
    assert result.exit_code == 0, result.output
    assert "inspect version 1 loaded" in result.output
    assert f"warning: {FORM_KEY_WARNING}" in result.output
    again = _run(runner, "process", "load", str(path))
    assert "unchanged" in again.output and FORM_KEY_WARNING in again.output
