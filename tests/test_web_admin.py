"""Admin pages: access, process upload, users, suspend/resume, health."""
import io
import json
import re
import time

import pytest

from support import EXPENSE, csrf_token, login
from portal.infra.extensions import db
from portal.models import History, Instance, ProcessDefinition, User

def _user(name):
    return db.session.execute(db.select(User).where(User.username == name)).scalar_one_or_none()


ADMIN_PAGES = ["/admin/processes", "/admin/users", "/admin/instances", "/admin/health"]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_render_for_admins(client, factory, url):
    factory.standard(tasks=1)
    login(client, "admin")
    assert client.get(url).status_code == 200


def test_admin_pages_are_forbidden_to_others(client, factory):
    factory.standard(tasks=1)
    for url in ADMIN_PAGES:
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    login(client, "sam")  # a supervisor is not an admin
    for url in ADMIN_PAGES + ["/admin/processes/1"]:
        assert client.get(url).status_code == 403, url
    token = csrf_token(client, "/")
    instance_id = db.session.execute(db.select(Instance.id)).scalar_one()
    posts = [f"/admin/instances/{instance_id}/suspend", "/admin/users",
             f"/admin/users/{_user('carol').id}/disable"]
    for url in posts:
        assert client.post(url, data={"csrf_token": token, "username": "x", "password": "y" * 9,
                                      "role": "admin"}).status_code == 403, url
    assert not db.session.get(Instance, instance_id).suspended
    assert _user("x") is None
    assert 'href="/admin/users"' not in client.get("/").get_data(as_text=True)


def _upload(client, content, filename="process.json"):
    token = csrf_token(client, "/admin/processes")
    return client.post("/admin/processes/upload", content_type="multipart/form-data",
                       data={"csrf_token": token, "file": (io.BytesIO(content), filename)})


def test_upload_a_process_definition(client, factory):
    factory.standard()
    login(client, "admin")
    leave = {"key": "leave", "name": "Leave request", "nodes": [
        {"key": "lead", "name": "Team lead", "assignee": "user:carol",
         "fields": [{"key": "days", "label": "Days", "type": "number", "min": 0.5, "max": 30}]}]}
    response = _upload(client, json.dumps(leave).encode())
    assert response.status_code == 302
    definition = db.session.execute(
        db.select(ProcessDefinition).where(ProcessDefinition.key == "leave")).scalar_one()
    assert response.headers["Location"] == f"/admin/processes/{definition.id}"
    page = client.get(f"/admin/processes/{definition.id}").get_data(as_text=True)
    assert "Team lead" in page and "user:carol" in page and "days" in page and "30" in page

    changed = dict(EXPENSE, name="Expense claim (new)")
    assert _upload(client, json.dumps(changed).encode()).status_code == 302
    listing = client.get("/admin/processes").get_data(as_text=True)
    row = re.search(r"<code>expense</code>.*?</tr>", listing, re.S).group(0)
    assert "Expense claim (new)" in row and ">v1<" in row and ">v2<" in row


def test_upload_refuses_bad_files_with_clear_errors(client, factory):
    factory.standard()
    login(client, "admin")
    response = _upload(client, b'{"key": "x", "nodes": [')
    assert response.status_code == 400
    assert "The file is not valid JSON" in response.get_data(as_text=True)
    response = _upload(client, json.dumps({"key": "x", "name": "X", "nodes": [
        {"key": "a", "assignee": "nobody"}]}).encode())
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The process definition is invalid." in page
    assert "nodes[0].assignee" in page and "must be user:NAME or role:NAME" in page
    response = client.post("/admin/processes/upload",
                           data={"csrf_token": csrf_token(client, "/admin/processes")})
    assert response.status_code == 400 and "Choose a .bpmn or .json file." in response.get_data(as_text=True)
    assert db.session.execute(db.select(db.func.count(ProcessDefinition.id))).scalar() == 1


@pytest.mark.parametrize("content", [b"[" * 200000, b'{"key": "x", "options": ' + b"[" * 500 + b"]" * 500 + b"}"])
def test_upload_refuses_a_deeply_nested_json_file_with_a_400(client, factory, content):
    factory.standard()
    login(client, "admin")
    response = _upload(client, content)
    assert response.status_code == 400
    assert "nested more than 32 levels" in response.get_data(as_text=True)
    assert db.session.execute(db.select(db.func.count(ProcessDefinition.id))).scalar() == 1


def test_the_upload_page_lists_an_ignored_form_key_as_a_warning(client, factory):
    from test_cli import FORM_KEY_BPMN, FORM_KEY_WARNING
    factory.standard()
    login(client, "admin")
    response = _upload(client, FORM_KEY_BPMN, "inspect.bpmn")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Loaded inspect version 1." in page and FORM_KEY_WARNING.replace("'", "&#39;") in page


def test_create_user_and_change_roles(client, factory):
    factory.standard()
    login(client, "admin")
    token = csrf_token(client, "/admin/users")
    response = client.post("/admin/users", data={
        "csrf_token": token, "username": "dave", "role": "supervisor",
        "workflow_roles": " finance   audit ", "password": "long-enough"})
    assert response.status_code == 302
    dave = _user("dave")
    assert dave.role == "supervisor" and dave.workflow_roles == "finance audit"
    assert dave.check_password("long-enough")

    response = client.post("/admin/users", data={
        "csrf_token": token, "username": "dave", "role": "user", "password": "short"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "This name is taken." in page and "At least 8 characters." in page

    response = client.post(f"/admin/users/{dave.id}", data={
        "csrf_token": token, "role": "user", "workflow_roles": "hr"})
    assert response.status_code == 302
    db.session.refresh(dave)
    assert dave.role == "user" and dave.workflow_roles == "hr"


def test_disable_and_enable_a_user(client, factory):
    users = factory.standard()
    login(client, "admin")
    token = csrf_token(client, "/admin/users")
    carol = users["carol"]
    assert client.post(f"/admin/users/{carol.id}/disable",
                       data={"csrf_token": token}).status_code == 302
    db.session.refresh(carol)
    assert carol.disabled
    page = client.get("/admin/users").get_data(as_text=True)
    assert re.search(r'data-user="carol">.*?>Disabled<.*?>Enable<', page, re.S)

    assert client.post(f"/admin/users/{carol.id}/enable",
                       data={"csrf_token": token}).status_code == 302
    db.session.refresh(carol)
    assert not carol.disabled

    response = client.post(f"/admin/users/{users['admin'].id}/disable",
                           data={"csrf_token": token}, follow_redirects=True)
    assert "You cannot disable your own account." in response.get_data(as_text=True)
    db.session.refresh(users["admin"])
    assert not users["admin"].disabled


def test_suspend_and_resume_an_instance(client, factory):
    factory.standard(tasks=2)
    login(client, "admin")
    instance_id = db.session.execute(db.select(Instance.id).order_by(Instance.id)).scalars().first()
    token = csrf_token(client, "/admin/instances")
    response = client.post(f"/admin/instances/{instance_id}/suspend",
                           data={"csrf_token": token, "next": "/admin/instances?status=running"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/instances?status=running"
    instance = db.session.get(Instance, instance_id)
    db.session.refresh(instance)
    assert instance.suspended
    page = client.get("/admin/instances?suspended=1").get_data(as_text=True)
    assert page.count("data-instance-id=") == 1 and "Resume" in page

    response = client.post(f"/admin/instances/{instance_id}/suspend",
                           data={"csrf_token": token}, follow_redirects=True)
    assert "cannot be suspended: it has finished or is suspended already" in \
        response.get_data(as_text=True)
    client.post(f"/admin/instances/{instance_id}/resume", data={"csrf_token": token})
    db.session.refresh(instance)
    assert not instance.suspended
    actions = [h.action for h in db.session.execute(
        db.select(History).where(History.instance_id == instance_id).order_by(History.id)).scalars()]
    assert actions == ["start", "suspend", "resume"]
    assert client.post("/admin/instances/9999/suspend",
                       data={"csrf_token": token}).status_code == 404


def test_health_page_shows_queue_workers_and_scheduler_beat(client, factory):
    from portal.infra.queueing import get_queue, get_redis
    from portal.jobs.scheduler import BEAT_KEY
    factory.standard()
    login(client, "admin")
    page = client.get("/admin/health").get_data(as_text=True)
    assert 'id="scheduler-beat">never<' in page
    assert "No worker is running" in page

    get_queue().enqueue("portal.jobs.periodic.no_such_job")  # waits in the queue, never run
    get_redis().set(BEAT_KEY, str(time.time() - 42))
    page = client.get("/admin/health").get_data(as_text=True)
    beat = re.search(r'id="scheduler-beat">([^<]*)<', page).group(1)
    assert re.fullmatch(r"4[2-9] seconds ago", beat), beat
    queue_row = re.search(r'data-queue="portal">.*?</tr>', page, re.S).group(0)
    assert re.search(r"data-queued>1<", queue_row)
    assert re.search(r"data-failed>0<", queue_row)


def test_health_page_lists_a_running_worker(client, factory, workers):
    from support import wait_for
    from rq import Worker
    from portal.infra.queueing import get_redis
    factory.standard()
    login(client, "admin")
    workers.start(1)
    wait_for(lambda: Worker.all(connection=get_redis()), timeout=30, message="a worker")
    page = client.get("/admin/health").get_data(as_text=True)
    assert "No worker is running" not in page
    assert re.search(r"1 worker<", page)


def test_an_instance_opened_from_admin_instances_leads_back_there(client, factory):
    users = factory.standard(tasks=1)
    login(client, "admin")
    listing = client.get("/admin/instances").get_data(as_text=True)
    link = re.search(r'href="(/instances/\d+\?via=admin)"', listing).group(1)
    page = client.get(link).get_data(as_text=True)
    breadcrumb = re.search(r'<ol class="breadcrumb">.*?</ol>', page, re.S).group(0)
    assert 'href="/admin/instances"' in breadcrumb and "My tasks" not in breadcrumb
    plain = client.get(link.split("?")[0]).get_data(as_text=True)
    assert "My tasks" in re.search(r'<ol class="breadcrumb">.*?</ol>', plain, re.S).group(0)
