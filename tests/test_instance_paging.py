"""A long instance is read in pages: GET /api/v1/instances/<id> pages its history and its tasks with
cursors (``history_limit``/``history_cursor``, ``tasks_limit``/``tasks_cursor``), the instance page shows
the latest entries and tasks with links to older ones."""
import re
from datetime import timedelta

import pytest

from bpmn_support import end, flow, multi_instance, process_xml, user_task
from support import login
from portal.infra.extensions import db
from portal.models import History, Instance
from portal.models.base import utcnow
from portal.workflow import engine
from portal.workflow.process_files import load_process_file

SIGNED = process_xml("signed", (
    user_task("sign", "${signer}", multi=multi_instance("${signers}", "signer"))
    + end("done") + flow("f0", "start", "sign") + flow("f1", "sign", "done")))


def _instance_with_history(users, entries):
    """An expense instance started by carol, with ``entries`` comments after its start entry."""
    instance = engine.start_instance("expense", "Long", {}, users["carol"])
    now = utcnow()
    db.session.add_all([History(instance_id=instance.id, user_id=users["carol"].id, action="sign",
                                comment=f"entry {i}", created_at=now + timedelta(seconds=i))
                        for i in range(entries)])
    db.session.commit()
    return instance


def _show(api, instance_id, query=""):
    response = api("carol").get(f"/instances/{instance_id}{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["instance"]


def test_a_short_history_comes_whole_with_no_cursor(api, users):
    instance = _instance_with_history(users, 3)
    answer = _show(api, instance.id)
    assert [h["comment"] for h in answer["history"]] == [None, "entry 0", "entry 1", "entry 2"]
    assert answer["history_next_cursor"] is None
    assert answer["all_tasks_next_cursor"] is None and len(answer["all_tasks"]) == 1


def test_the_history_pages_oldest_first_with_a_cursor(api, users):
    instance = _instance_with_history(users, 24)
    comments, cursor, pages = [], None, 0
    while True:
        answer = _show(api, instance.id, "?history_limit=10" + (f"&history_cursor={cursor}" if cursor else ""))
        pages += 1
        assert len(answer["history"]) <= 10
        comments += [h["comment"] for h in answer["history"]]
        cursor = answer["history_next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert comments == [None] + [f"entry {i}" for i in range(24)]


def test_the_default_history_page_is_bounded(api, users):
    instance = _instance_with_history(users, 600)
    answer = _show(api, instance.id)
    assert len(answer["history"]) == 500 and answer["history_next_cursor"] is not None
    rest = _show(api, instance.id, f"?history_cursor={answer['history_next_cursor']}")
    assert len(rest["history"]) == 101 and rest["history_next_cursor"] is None
    assert rest["history"][-1]["comment"] == "entry 599"


def test_all_tasks_page_with_their_own_cursor(api, users):
    load_process_file("signed.bpmn", SIGNED)
    db.session.commit()
    started = api("admin").post("/instances", json={
        "process": "signed", "title": "Three", "data": {"signers": ["alice", "bob", "carol"]}})
    instance_id = started.get_json()["instance"]["id"]
    first = _show(api, instance_id, "?tasks_limit=2")
    assert len(first["all_tasks"]) == 2 and first["all_tasks_next_cursor"] == first["all_tasks"][-1]["id"]
    assert len(first["tasks"]) == 3  # the pending tasks stay whole
    second = _show(api, instance_id, f"?tasks_limit=2&tasks_cursor={first['all_tasks_next_cursor']}")
    assert len(second["all_tasks"]) == 1 and second["all_tasks_next_cursor"] is None
    assert [t["id"] for t in first["all_tasks"] + second["all_tasks"]] == [t["id"] for t in first["tasks"]]


@pytest.mark.parametrize("query", ["history_limit=0", "history_limit=501", "history_limit=x",
                                   "history_cursor=-1", "history_cursor=99999999999999999999",
                                   "tasks_limit=0", "tasks_cursor=1_0"])
def test_paging_values_out_of_the_document_are_400(api, users, query):
    instance = _instance_with_history(users, 1)
    response = api("carol").get(f"/instances/{instance.id}?{query}")
    assert response.status_code == 400 and query.partition("=")[0] in response.get_json()["errors"]


def test_the_document_describes_the_paging(client):
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/instances/{instance_id}"]["get"]
    names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert {"history_limit", "history_cursor", "tasks_limit", "tasks_cursor"} <= names
    instance = document["components"]["schemas"]["Instance"]
    assert {"history_next_cursor", "all_tasks_next_cursor"} <= set(instance["properties"])


def _page_comments(html):
    history = html.split('id="history"')[1].split("</table>")[0]
    return re.findall(r"entry \d+", history)


def test_the_instance_page_shows_the_latest_entries_and_links_to_older_ones(client, users):
    from portal.web.tasks import HISTORY_PAGE
    instance = _instance_with_history(users, HISTORY_PAGE + 30)
    login(client, "carol")
    html = client.get(f"/instances/{instance.id}").get_data(as_text=True)
    assert _page_comments(html) == [f"entry {i}" for i in range(30, HISTORY_PAGE + 30)]
    older = re.search(r'href="([^"]*history_before=\d+[^"]*)"', html)
    assert older, "no link to older entries"
    html = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert _page_comments(html) == [f"entry {i}" for i in range(30)]
    assert 'data-action="start"' in html.split('id="history"')[1]
    assert not re.search(r'href="[^"]*history_before=', html)  # the oldest page links to no older one
    assert f'href="/instances/{instance.id}#history"' in html  # back to the latest


def test_the_instance_page_shows_the_latest_tasks_and_links_to_older_ones(client, users, app):
    from portal.web.tasks import TASKS_PAGE
    load_process_file("signed.bpmn", SIGNED)
    db.session.commit()
    names = [f"s{i}" for i in range(TASKS_PAGE + 5)]
    from support import Factory
    for name in names:
        Factory(app).user(name)
    instance = engine.start_instance("signed", "Many", {"signers": names}, users["carol"])
    db.session.commit()
    ids = [t.id for t in db.session.get(Instance, instance.id).tasks]
    login(client, "carol")
    html = client.get(f"/instances/{instance.id}").get_data(as_text=True)
    table = html.split('id="instance-tasks"')[1].split("</table>")[0]
    assert re.findall(r"<tr data-task=\"(\d+)\"", table) == [str(i) for i in ids[5:]]
    older = re.search(r'href="([^"]*tasks_before=\d+[^"]*)"', html)
    assert older, "no link to older tasks"
    html = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    table = html.split('id="instance-tasks"')[1].split("</table>")[0]
    assert re.findall(r"<tr data-task=\"(\d+)\"", table) == [str(i) for i in ids[:5]]


def test_page_cursors_beyond_the_id_range_are_a_400(client, users):
    instance = _instance_with_history(users, 1)
    login(client, "carol")
    for query in ("history_before=99999999999", "tasks_before=x"):
        assert client.get(f"/instances/{instance.id}?{query}").status_code == 400
