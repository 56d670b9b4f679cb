"""The batch pages: batch approve from a selection, the list, the batch page and its controls."""
import re
from datetime import datetime, timedelta

from sqlalchemy import event

from support import GOOD_FORM, csrf_token, login
from portal.batches import creation, dispatch, runner
from portal.batches.progress import eta_seconds, progress_percent
from portal.infra.extensions import db
from portal.infra.queueing import get_queue
from portal.models import Batch, BatchEvent, BatchFile, BatchItem, BatchItemAttempt, Task, User
from portal.workflow import engine


# --- helpers ---------------------------------------------------------------------

def _new_url(node_id, task_ids=(), **extra):
    query = [f"node_id={node_id}"] + [f"task_ids={task_id}" for task_id in task_ids]
    query += [f"{key}={value}" for key, value in extra.items()]
    return "/batches/new?" + "&".join(query)


def _post_new(client, node_id, task_ids=(), form=None, action="approve", **extra):
    """Confirm the batch approve form as the logged-in user, with "set the same value for
    all" ticked for each field of ``form``."""
    form = GOOD_FORM if form is None else form
    data = {"csrf_token": csrf_token(client, _new_url(node_id, task_ids, **extra)),
            "node_id": str(node_id), "task_ids": [str(t) for t in task_ids], "action": action,
            "comment": "checked by the batch page", "set_all": list(form)}
    data.update(extra)
    data.update(form)
    return client.post("/batches/new", data=data)


def _count(model):
    return db.session.execute(db.select(db.func.count()).select_from(model)).scalar()


def _locked_task_ids():
    return db.session.execute(db.select(Task.id).where(Task.lock_holder_id.is_not(None))).scalars().all()


def _html(response):
    return response.get_data(as_text=True)


def _item_ids(html):
    return [int(i) for i in re.findall(r'data-item-id="(\d+)"', html)]


def _batch_ids(html):
    return [int(i) for i in re.findall(r'data-batch-id="(\d+)"', html)]


def _failed_batch(factory, users, tasks):
    """A finished batch whose items all failed: its creator was disabled while it ran."""
    batch = factory.batch(users["alice"], tasks)
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    users["alice"].disabled = False
    db.session.commit()
    db.session.refresh(batch)
    assert (batch.status, batch.failed) == ("finished", len(tasks))
    return batch


# --- pure helpers ----------------------------------------------------------------

def test_eta_is_remaining_items_at_the_rate_seen_so_far():
    now = datetime(2026, 1, 1, 12, 0, 0)
    started = now - timedelta(seconds=20)
    assert eta_seconds(remaining=90, processed=10, started_at=started, now=now) == 180
    assert eta_seconds(remaining=1, processed=3, started_at=started, now=now) == 7
    assert eta_seconds(remaining=90, processed=0, started_at=started, now=now) is None
    assert eta_seconds(remaining=0, processed=10, started_at=started, now=now) is None
    assert eta_seconds(remaining=5, processed=10, started_at=None, now=now) is None


def test_progress_percent_counts_items_that_ended():
    assert progress_percent(Batch(total=8, pending=3, running=1)) == 50
    assert progress_percent(Batch(total=3, pending=0, running=0)) == 100
    assert progress_percent(Batch(total=3, pending=3, running=0)) == 0


# --- creating a batch -----------------------------------------------------------------

def test_new_page_needs_a_login(client, factory):
    factory.standard(tasks=1)
    response = client.get(_new_url(1, [1]))
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_new_page_previews_eligibility_and_renders_the_nodes_form(client, factory):
    users = factory.standard()
    tasks = factory.tasks(5, starter=users["admin"])
    engine.decide(tasks[0].id, users["alice"], "approve", "", GOOD_FORM)
    engine.set_suspended(tasks[1].instance_id, users["admin"], True)
    db.session.commit()
    login(client, "alice")
    ids = [t.id for t in tasks] + [999999, tasks[4].id]
    response = client.get(_new_url(tasks[0].node_id, ids))
    html = _html(response)
    assert response.status_code == 200
    assert 'data-eligible="3"' in html
    for reason, label, count in (("done", "Already handled", 1), ("suspended", "Suspended", 1),
                                 ("unavailable", "Not available to you", 1),
                                 ("duplicate", "Chosen more than once", 1)):
        assert re.search(rf'data-reason="{reason}">{label}: <strong>{count}</strong>', html)
    assert "Manager review" in html
    for name in ("amount", "category", "paid_on", "urgent", "note"):
        assert f'name="{name}"' in html
    assert 'name="lines"' not in html          # table fields are for per-instance imports
    assert "Lines: filled per task, in the one-sheet-per-task Excel template." in html
    assert f'href="/nodes/{tasks[0].node_id}/import"' in html
    assert '<option value="Travel"' in html
    assert html.count('name="task_ids"') == len(ids)
    assert _count(Batch) == 0                  # a preview creates nothing


def test_new_page_for_someone_elses_tasks_counts_them_as_unavailable(client, factory):
    users = factory.standard()
    tasks = factory.tasks(2, starter=users["admin"])
    login(client, "carol")
    html = _html(client.get(_new_url(tasks[0].node_id, [t.id for t in tasks])))
    assert 'data-eligible="0"' in html
    assert 'data-reason="unavailable">Not available to you' in html


def test_new_page_without_tasks_or_node(client, factory):
    factory.standard(tasks=1)
    login(client, "alice")
    assert client.get("/batches/new?node_id=424242&task_ids=1").status_code == 404
    node_id = db.session.execute(db.select(Task.node_id)).scalar()
    response = client.get(_new_url(node_id, []))
    assert response.status_code == 400 and 'data-error-for="task_ids"' in _html(response)
    assert client.get(_new_url(node_id, ["abc"])).status_code == 400


def test_confirming_creates_the_batch_and_hands_it_to_the_workers(client, factory):
    users = factory.standard()
    tasks = factory.tasks(4, starter=users["admin"])
    login(client, "alice")
    response = _post_new(client, tasks[0].node_id, [t.id for t in tasks],
                         form=dict(GOOD_FORM, urgent="1", paid_on="2026-02-03"), concurrency="2")
    batch = db.session.execute(db.select(Batch)).scalar_one()
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/batches/{batch.id}")
    assert (batch.total, batch.pending, batch.concurrency, batch.mode) == (4, 4, 2, "form")
    assert batch.shared_form == {"amount": 12.5, "category": "Travel", "urgent": True,
                               "paid_on": "2026-02-03"}
    assert batch.comment == "checked by the batch page"
    assert get_queue().count == dispatch.lanes_for(batch) >= 1   # lanes for the workers
    page = _html(client.get(response.headers["Location"]))
    assert f"Batch {batch.number} created." in page
    runner.run_inline(batch.id)
    db.session.refresh(batch)
    assert (batch.status, batch.success) == ("finished", 4)
    for task in tasks:
        db.session.refresh(task)
    assert {task.status for task in tasks} == {"done"}


def test_invalid_form_is_shown_again_with_each_fields_error_and_nothing_created(client, factory):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    login(client, "alice")
    response = _post_new(client, tasks[0].node_id, [t.id for t in tasks],
                         form={"amount": "abc", "category": "", "note": "kept"}, concurrency="99")
    html = _html(response)
    assert response.status_code == 422
    for key in ("amount", "category", "concurrency"):
        assert f'data-error-for="{key}"' in html
    assert 'data-error-for="amount">Enter a number.' in html
    assert 'value="kept"' in html                  # what the user typed stays
    assert html.count('name="task_ids"') == 3      # the selection is carried on
    assert _count(Batch) == 0 and _count(BatchItem) == 0
    assert _locked_task_ids() == []


def test_concurrency_and_action_errors_are_shown_next_to_their_inputs(client, factory):
    users = factory.standard()
    tasks = factory.tasks(1, starter=users["admin"])
    login(client, "alice")
    response = _post_new(client, tasks[0].node_id, [tasks[0].id], action="maybe")
    assert response.status_code == 422 and 'data-error-for="action"' in _html(response)
    assert _count(Batch) == 0


def test_all_matching_takes_every_pending_task_that_matches_the_search(client, factory):
    users = factory.standard()
    factory.tasks(3, starter=users["admin"], title="Hotel")
    others = factory.tasks(2, starter=users["admin"], title="Taxi")
    node_id = others[0].node_id
    login(client, "alice")
    html = _html(client.get(_new_url(node_id, all="1", q="Hotel")))
    assert "3 pending tasks match" in html and 'data-eligible="3"' in html
    assert 'name="all" value="1"' in html and 'name="q" value="Hotel"' in html
    assert 'name="task_ids"' not in html
    response = _post_new(client, node_id, all="1", q="Hotel")
    assert response.status_code == 302
    batch = db.session.execute(db.select(Batch)).scalar_one()
    assert batch.total == 3 and batch.filter == {"all_pending": True, "title_contains": "Hotel"}
    titles = db.session.execute(db.select(Task.id).where(Task.lock_batch_id == batch.id)).scalars()
    assert not set(titles) & {t.id for t in others}


def test_all_matching_with_no_match_creates_nothing(client, factory):
    users = factory.standard()
    tasks = factory.tasks(2, starter=users["admin"])
    login(client, "alice")
    response = client.get(_new_url(tasks[0].node_id, all="1", q="nothing like this"))
    assert response.status_code == 400 and "There are no pending tasks of yours at this node that match." in _html(response)


def test_confirming_needs_the_csrf_token(client, factory):
    users = factory.standard()
    tasks = factory.tasks(1, starter=users["admin"])
    login(client, "alice")
    response = client.post("/batches/new", data=dict(GOOD_FORM, node_id=tasks[0].node_id,
                                                     task_ids=[tasks[0].id], action="approve"))
    assert response.status_code == 400 and _count(Batch) == 0


# --- the list --------------------------------------------------------------------

def test_list_shows_own_batches_and_supervisors_see_all(client, factory):
    users = factory.standard()
    tasks = factory.tasks(2, starter=users["admin"])
    mine = factory.batch(users["alice"], tasks[:1])
    theirs = factory.batch(users["carol"], tasks[1:])      # carol's ids are not hers: all ignored
    login(client, "alice")
    assert _batch_ids(_html(client.get("/batches"))) == [mine.id]
    client.post("/logout", data={"csrf_token": csrf_token(client, "/batches")})
    login(client, "sam")
    html = _html(client.get("/batches"))
    assert _batch_ids(html) == [theirs.id, mine.id]     # newest first
    assert mine.number in html and "alice" in html and "carol" in html
    assert _batch_ids(_html(client.get(f"/batches?creator_id={users['carol'].id}"))) == [theirs.id]


def test_list_filters_by_status_and_node(client, factory):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    running = factory.batch(users["alice"], tasks[:1])
    done = factory.batch(users["alice"], tasks[1:2])
    runner.run_inline(done.id)
    failed = factory.batch(users["alice"], tasks[2:])
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(failed.id)
    users["alice"].disabled = False
    db.session.commit()
    login(client, "alice")
    assert _batch_ids(_html(client.get("/batches?status=pending"))) == [running.id]
    assert _batch_ids(_html(client.get("/batches?status=finished"))) == [failed.id, done.id]
    with_errors = _html(client.get("/batches?status=finished_with_errors"))
    assert _batch_ids(with_errors) == [failed.id] and "Finished with errors" in with_errors
    assert _batch_ids(_html(client.get(f"/batches?node_id={tasks[0].node_id}"))) == [
        failed.id, done.id, running.id]
    assert _batch_ids(_html(client.get("/batches?node_id=424242"))) == []
    # a plain user cannot widen the list with the creator filter
    other = factory.batch(users["carol"], tasks[:1])
    assert other.id not in _batch_ids(_html(client.get(f"/batches?creator_id={users['carol'].id}")))


def test_list_pages_by_fifty(client, factory):
    users = factory.standard()
    tasks = factory.tasks(53, starter=users["admin"])
    ids = [factory.batch(users["alice"], [task]).id for task in tasks]
    login(client, "alice")
    first = _html(client.get("/batches"))
    assert _batch_ids(first) == ids[::-1][:50]
    next_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = _html(client.get(next_url))
    assert _batch_ids(second) == ids[::-1][50:]
    previous_url = re.search(r'rel="prev" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    assert _batch_ids(_html(client.get(previous_url))) == ids[::-1][:50]


# --- the batch page ----------------------------------------------------------------------

def test_batch_page_is_hidden_from_others(client, factory):
    users = factory.standard()
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    item_id = db.session.execute(db.select(BatchItem.id)).scalar()
    login(client, "carol")
    for url in (f"/batches/{batch.id}", f"/batches/{batch.id}/progress",
                f"/batches/{batch.id}/items/{item_id}", "/batches/424242"):
        assert client.get(url).status_code == 404, url
    token = csrf_token(client, "/batches")
    assert client.post(f"/batches/{batch.id}/pause", data={"csrf_token": token}).status_code == 404
    db.session.refresh(batch)
    assert batch.status == "pending"


def test_batch_page_shows_counters_progress_and_audit_log(client, factory):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks + [tasks[0]])     # one duplicate: ignored
    runner.run_inline(batch.id)
    login(client, "alice")
    html = _html(client.get(f"/batches/{batch.id}"))
    assert batch.number in html
    assert 'aria-valuenow="100"' in html and 'data-active="0"' in html
    assert 'data-counter="total">4<' in html and 'data-counter="success">3<' in html
    assert 'data-counter="ignored">1<' in html
    assert 'data-values="[3, 0, 1, 0, 0]"' in html or "data-values='[3, 0, 1, 0, 0]'" in html
    assert 'data-event="created"' in html
    assert "/js/batches.js" in html and "<script>" not in html and "style=" not in html


def test_progress_json_reports_counters_and_eta(client, factory):
    users = factory.standard()
    tasks = factory.tasks(4, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    login(client, "alice")
    data = client.get(f"/batches/{batch.id}/progress").get_json()
    assert (data["id"], data["status"], data["total"], data["pending"]) == (
        batch.id, "pending", 4, 4)
    assert data["percent"] == 0 and data["active"] is True and data["eta_seconds"] is None
    assert data["by_status"]["pending"] == 4 and data["status_label"] == "Pending"
    runner.run_lane(batch.id, slice_seconds=0)    # one item, and the batch is running
    # that run took 30 s: three items left at that rate
    db.session.execute(db.update(BatchItemAttempt).where(BatchItemAttempt.batch_id == batch.id)
                       .values(started_at=datetime.utcnow() - timedelta(seconds=30)))
    db.session.commit()
    data = client.get(f"/batches/{batch.id}/progress").get_json()
    assert (data["status"], data["success"], data["percent"]) == ("running", 1, 25)
    assert 80 <= data["eta_seconds"] <= 100 and "left" in data["eta_text"]
    runner.run_inline(batch.id)
    data = client.get(f"/batches/{batch.id}/progress").get_json()
    assert (data["status"], data["percent"], data["active"], data["eta_seconds"]) == (
        "finished", 100, False, None)


def test_the_eta_of_a_few_items_retried_on_an_old_batch_goes_by_recent_runs(client, factory):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(3, starter=users["admin"]))
    runner.run_inline(batch.id)
    week_ago = datetime.utcnow() - timedelta(days=7)
    db.session.execute(db.update(BatchItemAttempt).values(started_at=week_ago,
                                                           finished_at=week_ago))
    db.session.execute(db.update(Batch).where(Batch.id == batch.id).values(
        status="running", started_at=week_ago, pending=1, success=2))
    db.session.commit()
    login(client, "alice")
    data = client.get(f"/batches/{batch.id}/progress").get_json()
    assert data["eta_seconds"] is None          # nothing ran lately: no rate to go by
    # one run finished just now, after 2 s: the one item left takes about as long
    item = db.session.execute(db.select(BatchItem).limit(1)).scalar_one()
    db.session.add(BatchItemAttempt(item_id=item.id, batch_id=batch.id, outcome="success",
                                    started_at=datetime.utcnow() - timedelta(seconds=2),
                                    finished_at=datetime.utcnow()))
    db.session.commit()
    assert 1 <= client.get(f"/batches/{batch.id}/progress").get_json()["eta_seconds"] <= 3


def test_items_page_through_keyset_pages_and_filter_without_counting(client, factory):
    users = factory.standard()
    tasks = factory.tasks(55, starter=users["admin"])
    batch = creation.create_batch(users["alice"], tasks[0].node,
                                  task_ids=[t.id for t in tasks] + [900001, 900002, 900003],
                                  action="approve", form=GOOD_FORM)
    db.session.commit()
    all_ids = db.session.execute(db.select(BatchItem.id).order_by(BatchItem.id)).scalars().all()
    ignored_ids = db.session.execute(db.select(BatchItem.id).where(
        BatchItem.status == "ignored").order_by(BatchItem.id)).scalars().all()
    login(client, "alice")
    statements = []
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        first = _html(client.get(f"/batches/{batch.id}"))
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert _item_ids(first) == all_ids[:50]
    assert not [s for s in statements if "count(" in s.lower() and "batch_item" in s.lower()]
    next_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = _html(client.get(next_url))
    assert _item_ids(second) == all_ids[50:]
    assert 'rel="next" href="#"' in second
    ignored = _html(client.get(f"/batches/{batch.id}?status=ignored"))
    assert _item_ids(ignored) == ignored_ids and "No longer exists" not in ignored
    assert "The task is not available to you." in ignored
    assert _item_ids(_html(client.get(f"/batches/{batch.id}?status=failed"))) == []
    assert "Claim 0" in first                      # the task's title


def test_pause_resume_and_cancel_by_post(client, factory):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    get_queue().empty()
    login(client, "alice")
    url = f"/batches/{batch.id}"
    assert client.post(url + "/pause").status_code == 400         # no CSRF token
    db.session.refresh(batch)
    assert batch.status == "pending"
    token = csrf_token(client, url)
    page = _html(client.get(url))
    assert 'data-bs-target="#confirm-pause"' in page and 'data-bs-target="#confirm-cancel"' in page
    response = client.post(url + "/pause", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith(url)
    db.session.refresh(batch)
    assert batch.status == "paused"
    assert "Batch paused." in _html(client.get(url))
    client.post(url + "/resume", data={"csrf_token": token})
    db.session.refresh(batch)
    assert batch.status == "running"
    assert get_queue().count == dispatch.lanes_for(batch) >= 1      # lanes for the resumed work
    client.post(url + "/cancel", data={"csrf_token": token})
    db.session.refresh(batch)
    assert (batch.status, batch.cancelled, batch.pending) == ("cancelled", 3, 0)
    assert _locked_task_ids() == []
    client.post(url + "/pause", data={"csrf_token": token})      # too late: a readable warning
    db.session.refresh(batch)
    assert batch.status == "cancelled"
    assert "Only a pending or running batch can be paused." in _html(client.get(url))
    actions = db.session.execute(db.select(BatchEvent.action).where(
        BatchEvent.batch_id == batch.id).order_by(BatchEvent.id)).scalars().all()
    assert actions == ["created", "paused", "resumed", "cancelled"]


def test_a_supervisor_may_pause_someone_elses_batch(client, factory):
    users = factory.standard()
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    login(client, "sam")
    client.post(f"/batches/{batch.id}/pause",
                data={"csrf_token": csrf_token(client, f"/batches/{batch.id}")})
    db.session.refresh(batch)
    assert batch.status == "paused"
    event_row = db.session.execute(
        db.select(BatchEvent).where(BatchEvent.action == "paused")).scalar_one()
    assert event_row.user_id == users["sam"].id


def test_retry_is_for_supervisors_and_reports_items_at_the_limit(client, factory, app):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    batch = _failed_batch(factory, users, tasks)
    items = db.session.execute(db.select(BatchItem).order_by(BatchItem.id)).scalars().all()
    url = f"/batches/{batch.id}"
    login(client, "alice")
    assert "Retry 3 failed items" not in _html(client.get(url))
    refused = client.post(url + "/retry", data={"csrf_token": csrf_token(client, url)})
    assert refused.status_code == 403
    db.session.refresh(batch)
    assert batch.failed == 3

    items[0].retry_count = app.config["BATCH_RETRY_LIMIT"]
    db.session.commit()
    client.post("/logout", data={"csrf_token": csrf_token(client, url)})
    login(client, "sam")
    page = _html(client.get(url))
    assert "Retry 2 failed items" in page          # the one at the limit stays as it is
    assert page.count("data-at-limit") == 1
    response = client.post(url + "/retry", data={"csrf_token": csrf_token(client, url)},
                           follow_redirects=True)
    html = _html(response)
    assert "2 items retried." in html
    assert "1 item reached the retry limit: its task is back to manual handling." in html
    db.session.refresh(batch)
    assert (batch.status, batch.pending, batch.failed) == ("running", 2, 1)
    retried = db.session.execute(
        db.select(BatchItem).where(BatchItem.status == "pending")).scalars().all()
    assert {i.retried_by_id for i in retried} == {users["sam"].id}
    runner.run_inline(batch.id)
    page = _html(client.get(url))
    assert 'data-counter="success">2<' in page and "sam, " in page
    assert 'data-event="retried"' in page


def test_per_item_retry_from_the_item_page(client, factory):
    users = factory.standard()
    tasks = factory.tasks(2, starter=users["admin"])
    batch = _failed_batch(factory, users, tasks)
    first, second = db.session.execute(db.select(BatchItem).order_by(BatchItem.id)).scalars().all()
    item_url = f"/batches/{batch.id}/items/{first.id}"
    login(client, "sam")
    page = _html(client.get(item_url))
    assert 'data-outcome="failed"' in page and "is disabled" in page
    response = client.post(f"/batches/{batch.id}/retry", data={
        "csrf_token": csrf_token(client, item_url), "item_id": str(first.id), "next_page": "item"})
    assert response.headers["Location"].endswith(item_url)
    db.session.refresh(first)
    db.session.refresh(second)
    assert (first.status, first.retry_count, second.status) == ("pending", 1, "failed")
    runner.run_inline(batch.id)
    page = _html(client.get(item_url))
    assert page.count("data-outcome=") == 2 and 'data-outcome="success"' in page
    assert "data-retried-by" in page and "sam" in page


def test_item_page_of_another_batch_is_not_found(client, factory):
    users = factory.standard()
    tasks = factory.tasks(2, starter=users["admin"])
    first = factory.batch(users["alice"], tasks[:1])
    second = factory.batch(users["alice"], tasks[1:])
    other_item = db.session.execute(db.select(BatchItem.id).where(
        BatchItem.batch_id == second.id)).scalar()
    login(client, "alice")
    assert client.get(f"/batches/{first.id}/items/{other_item}").status_code == 404
    assert client.get(f"/batches/{second.id}/items/{other_item}").status_code == 200


def test_batch_page_links_error_workbook_and_source_batch(client, factory):
    users = factory.standard()
    tasks = factory.tasks(2, starter=users["admin"])
    source = factory.batch(users["alice"], tasks[:1])
    correction = factory.batch(users["alice"], tasks[1:], source_batch_id=source.id)
    login(client, "alice")
    html = _html(client.get(f"/batches/{correction.id}"))
    assert f'href="/batches/{source.id}" data-source-batch>{source.number}<' in html
    assert "error-file" not in html
    workbook = BatchFile(batch_id=source.id, kind="error", filename="errors.xlsx", content=b"x")
    db.session.add(workbook)
    db.session.flush()
    source.error_file_id = workbook.id
    db.session.commit()
    assert f'href="/batches/{source.id}/error-file"' in _html(client.get(f"/batches/{source.id}"))


def test_pages_render_in_chinese(client, factory):
    users = factory.standard()
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    login(client, "alice")
    client.post("/lang/zh_CN", data={"csrf_token": csrf_token(client, "/")})
    for url in ("/batches", f"/batches/{batch.id}", _new_url(tasks[0].node_id, [tasks[0].id])):
        response = client.get(url)
        assert response.status_code == 200, url
    # dates follow the reader's language
    assert f"{batch.created_at.year}年" in _html(client.get(f"/batches/{batch.id}"))
    assert db.session.get(User, users["alice"].id).locale == "zh_CN"


def test_an_item_waiting_for_its_retry_says_so_instead_of_showing_an_old_error(client, factory):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    db.session.execute(db.update(BatchItem).values(retry_count=1, error="DeadlockDetected"))
    db.session.commit()
    login(client, "alice")
    html = _html(client.get(f"/batches/{batch.id}"))
    assert "data-retrying" in html and "Last try: DeadlockDetected" in html
