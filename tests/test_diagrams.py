"""Process diagrams on the server side (portal/web/diagrams.py): who may fetch an instance's or a
version's BPMN file and how it is sent, the markers the instance page gets (done, current, rejected
user tasks) and the pending counts per user task the admin process page gets."""
import html
import json
import re

from flask import current_app
from lxml import etree
from sqlalchemy import event

from portal.infra.extensions import db
from portal.models import Instance, Node, ProcessDefinition, Task
from portal.web.diagrams import instance_diagram, process_diagram
from portal.workflow.engine import decide
from portal.workflow.process_files import load_bpmn_definition, load_definition
from support import EXPENSE, GOOD_FORM, login

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"

# Manager, then finance; a reject at finance goes back to the manager, an approval ends it.
LOOP = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="loop" name="Claim with rework" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:userTask id="manager" name="Manager" camunda:assignee="alice" />
    <bpmn:userTask id="finance" name="Finance" camunda:candidateGroups="finance" />
    <bpmn:exclusiveGateway id="checked" default="to_end" />
    <bpmn:endEvent id="end" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="manager" />
    <bpmn:sequenceFlow id="f2" sourceRef="manager" targetRef="finance" />
    <bpmn:sequenceFlow id="f3" sourceRef="finance" targetRef="checked" />
    <bpmn:sequenceFlow id="back" sourceRef="checked" targetRef="manager">
      <bpmn:conditionExpression>${action == 'reject'}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="to_end" sourceRef="checked" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def _start(key, starter, count=1):
    from portal.workflow.engine import start_instance
    instances = [start_instance(key, f"Claim {i}", {}, starter) for i in range(count)]
    db.session.commit()
    return instances


def _pending(instance_id, node_key):
    return db.session.execute(
        db.select(Task).join(Node, Task.node_id == Node.id)
        .where(Task.instance_id == instance_id, Task.status == "pending", Node.key == node_key)).scalar_one()


def _client_as(app, name):
    """A test client of its own, logged in as ``name``."""
    client = app.test_client()
    assert login(client, name).status_code == 302
    return client


def _decide(instance_id, node_key, user, action, form=None):
    task = _pending(instance_id, node_key)
    decide(task.id, user, action, form=form or {})
    db.session.commit()


def _in_request(function, *args):
    """Call a template global as a page would: inside a request (it builds URLs)."""
    with current_app.test_request_context():
        return function(*args)


def _markers(instance_id):
    db.session.expire_all()
    diagram = _in_request(instance_diagram, db.session.get(Instance, instance_id))
    return {name: diagram[name] for name in ("done", "active", "rejected")}


def _data_attribute(page, element_id, name):
    """A data-* attribute of the element with ``element_id``, unescaped and parsed as JSON."""
    tag = re.search(r'<[^>]*\bid="%s"[^>]*>' % re.escape(element_id), page, re.S).group(0)
    match = re.search(r"""%s=(?:'([^']*)'|"([^"]*)")""" % re.escape(name), tag)
    raw = match.group(1) if match.group(1) is not None else match.group(2)
    return html.unescape(raw)


# --- the XML routes -----------------------------------------------------------------------------

def test_instance_file_for_who_may_see_the_instance(app, factory):
    users = factory.standard()
    instance = _start("expense", users["alice"])[0]
    definition = instance.process
    url = f"/instances/{instance.id}/diagram.bpmn"

    for name in ("alice", "admin"):  # the starter (and manager-node assignee), an admin
        response = _client_as(app, name).get(url)
        assert response.status_code == 200, name
        assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "no-store" in response.headers["Cache-Control"]
        assert "private" in response.headers["Cache-Control"]
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.get_data(as_text=True) == definition.bpmn
        tree = etree.fromstring(response.data)
        assert {task.get("id") for task in tree.iter(f"{{{BPMN_NS}}}userTask")} == {"manager", "finance"}

    for name in ("carol", "bob"):  # no part in it (bob's finance task does not exist yet)
        client = _client_as(app, name)
        assert client.get(url).status_code == 404, name
    assert _client_as(app, "admin").get("/instances/999999/diagram.bpmn").status_code == 404


def test_instance_file_once_the_instance_reaches_someone(client, factory):
    users = factory.standard()
    instance = _start("expense", users["alice"])[0]
    _decide(instance.id, "manager", users["alice"], "approve", GOOD_FORM)
    login(client, "bob")
    assert client.get(f"/instances/{instance.id}/diagram.bpmn").status_code == 200


def test_instance_file_needs_a_login(client, factory):
    users = factory.standard()
    instance = _start("expense", users["alice"])[0]
    response = client.get(f"/instances/{instance.id}/diagram.bpmn")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_version_file_for_admins_only(app, factory):
    factory.standard()
    definition = db.session.execute(db.select(ProcessDefinition)).scalar_one()
    url = f"/admin/processes/{definition.id}/diagram.bpmn"
    client = _client_as(app, "admin")
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.get_data(as_text=True) == definition.bpmn
    assert client.get(f"/admin/processes/{definition.id + 1}/diagram.bpmn").status_code == 404
    for name in ("alice", "sam"):  # a user, a supervisor
        assert _client_as(app, name).get(url).status_code == 404, name


def test_version_without_a_bpmn_file_has_no_diagram(client, factory):
    users = factory.standard()
    instance = _start("expense", users["alice"])[0]
    definition = instance.process
    definition.bpmn = None
    db.session.commit()
    login(client, "admin")
    assert client.get(f"/instances/{instance.id}/diagram.bpmn").status_code == 404
    assert client.get(f"/admin/processes/{definition.id}/diagram.bpmn").status_code == 404
    for url, missing in ((f"/instances/{instance.id}", "instance-diagram-missing"),
                         (f"/admin/processes/{definition.id}", "process-diagram-missing")):
        page = client.get(url).get_data(as_text=True)
        assert f'id="{missing}"' in page and "data-bpmn-diagram" not in page, url
        assert "bpmn-navigated-viewer" not in page, url
    assert _in_request(instance_diagram, instance) is None
    assert _in_request(process_diagram, definition) is None


# --- the markers of an instance -----------------------------------------------------------------

def test_markers_follow_an_instance_sent_back_and_approved(factory):
    users = factory.standard()
    load_bpmn_definition(LOOP)
    db.session.commit()
    instance_id = _start("loop", users["alice"])[0].id
    assert _markers(instance_id) == {"done": [], "active": ["manager"], "rejected": []}

    _decide(instance_id, "manager", users["alice"], "approve")
    assert _markers(instance_id) == {"done": ["manager"], "active": ["finance"], "rejected": []}

    _decide(instance_id, "finance", users["bob"], "reject")  # back to the manager
    assert _markers(instance_id) == {"done": ["finance", "manager"], "active": ["manager"],
                                     "rejected": ["finance"]}

    _decide(instance_id, "manager", users["alice"], "approve")  # finance again: still last rejected
    assert _markers(instance_id) == {"done": ["finance", "manager"], "active": ["finance"],
                                     "rejected": ["finance"]}

    _decide(instance_id, "finance", users["bob"], "approve")  # its last decision is an approval now
    assert _markers(instance_id) == {"done": ["finance", "manager"], "active": [], "rejected": []}
    assert db.session.get(Instance, instance_id).status == "approved"


def test_markers_of_an_instance_rejected_at_its_second_node(factory):
    users = factory.standard()
    instance_id = _start("expense", users["alice"])[0].id
    _decide(instance_id, "manager", users["alice"], "approve", GOOD_FORM)
    _decide(instance_id, "finance", users["bob"], "reject")
    assert db.session.get(Instance, instance_id).status == "rejected"
    diagram = _in_request(instance_diagram, db.session.get(Instance, instance_id))
    assert diagram == {"url": f"/instances/{instance_id}/diagram.bpmn", "done": ["finance", "manager"],
                       "active": [], "rejected": ["finance"]}


def test_instance_page_carries_the_markers(client, factory):
    users = factory.standard()
    load_bpmn_definition(LOOP)
    db.session.commit()
    instance_id = _start("loop", users["alice"])[0].id
    _decide(instance_id, "manager", users["alice"], "approve")
    _decide(instance_id, "finance", users["bob"], "reject")
    login(client, "alice")
    response = client.get(f"/instances/{instance_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.index(">Diagram<") < page.index('id="instance-tasks"')
    assert _data_attribute(page, "instance-diagram", "data-url") == f"/instances/{instance_id}/diagram.bpmn"
    assert json.loads(_data_attribute(page, "instance-diagram", "data-done")) == ["finance", "manager"]
    assert json.loads(_data_attribute(page, "instance-diagram", "data-active")) == ["manager"]
    assert json.loads(_data_attribute(page, "instance-diagram", "data-rejected")) == ["finance"]
    assert "vendor/bpmn-js/bpmn-navigated-viewer.production.min.js" in page
    assert "js/diagram.js" in page and "css/diagram.css" in page and "vendor/bpmn-js/bpmn-js.css" in page
    assert " style=" not in page and "<script>" not in page


def test_other_pages_do_not_load_the_viewer(client, factory):
    factory.standard(tasks=1)
    login(client, "admin")
    for url in ("/", "/admin/processes", "/admin/users"):
        page = client.get(url).get_data(as_text=True)
        assert "bpmn-js" not in page and "diagram.js" not in page, url


# --- pending counts of a version ----------------------------------------------------------------

def test_counts_of_pending_tasks_of_running_instances(factory):
    users = factory.standard()
    instances = _start("expense", users["alice"], count=4)
    _decide(instances[0].id, "manager", users["alice"], "approve", GOOD_FORM)
    _decide(instances[1].id, "manager", users["alice"], "approve", GOOD_FORM)
    _decide(instances[1].id, "finance", users["bob"], "approve")  # finished: counts nowhere
    # A stopped instance's task is not waiting for anyone, whatever its row says.
    stopped = db.session.get(Instance, instances[2].id)
    stopped.status = "cancelled"
    db.session.commit()

    definition = db.session.get(Instance, instances[0].id).process
    statements = []

    def count_statement(*args):
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count_statement)
    try:
        diagram = _in_request(process_diagram, definition)
    finally:
        event.remove(db.engine, "before_cursor_execute", count_statement)
    assert diagram == {"url": f"/admin/processes/{definition.id}/diagram.bpmn",
                       "counts": {"manager": 1, "finance": 1}}
    assert len(statements) == 1 and "GROUP BY" in statements[0].upper()

    # Another version's tasks are its own.
    changed = dict(EXPENSE, name="Expense claim (new)")
    new_version, created = load_definition(changed)
    db.session.commit()
    assert created and new_version.id != definition.id
    _start("expense", users["alice"], count=2)
    assert _in_request(process_diagram, new_version)["counts"] == {"manager": 2}
    assert _in_request(process_diagram, definition)["counts"] == {"manager": 1, "finance": 1}


def test_admin_process_page_carries_the_counts(client, factory):
    users = factory.standard()
    instances = _start("expense", users["alice"], count=3)
    _decide(instances[0].id, "manager", users["alice"], "approve", GOOD_FORM)
    definition = db.session.get(Instance, instances[0].id).process
    login(client, "admin")
    page = client.get(f"/admin/processes/{definition.id}").get_data(as_text=True)
    assert page.index('id="process-diagram"') < page.index("Manager review")
    assert json.loads(_data_attribute(page, "process-diagram", "data-counts")) == {"manager": 2, "finance": 1}
    assert _data_attribute(page, "process-diagram", "data-url") == f"/admin/processes/{definition.id}/diagram.bpmn"
    assert "vendor/bpmn-js/bpmn-navigated-viewer.production.min.js" in page
    assert " style=" not in page and "<script>" not in page
