"""Correct and retry: a failure of an item's own values is fixed by a person, not
retried as it is (a retry would fail again until the retry limit)."""
import re

import pytest

from support import csrf_token, login
from excel_support import node_by_key, single_file, upload
from portal.batches import control, runner
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, BatchItemAttempt, Task


@pytest.fixture
def failed(client, factory, users):
    """A finished import batch: task 0 approved, task 1 failed to import (amount "ten")."""
    tasks = factory.tasks(2, starter=users["admin"])
    node = node_by_key()
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    data = single_file(build_template(users["alice"], node, "single", "en"), [
        (tasks[0].id, {"C": "approve", "E": 5, "F": "Travel"}),
        (tasks[1].id, {"C": "approve", "D": "my note", "E": "ten", "F": "Meals"})])
    batch_id = upload(client, headers, node, data).get_json()["batch"]["id"]
    runner.run_inline(batch_id)
    item = db.session.execute(db.select(BatchItem).where(
        BatchItem.batch_id == batch_id, BatchItem.task_id == tasks[1].id)).scalar_one()
    assert (item.status, item.error_kind) == ("import_failed", "validation")
    return db.session.get(Batch, batch_id), item, tasks


def _html(response):
    return response.get_data(as_text=True)


def test_a_data_error_offers_a_correction_not_a_retry(client, users, failed):
    batch, item, _tasks = failed
    login(client, "sam")
    page = _html(client.get(f"/batches/{batch.id}"))
    assert "data-correct" in page
    assert not re.search(rf'name="item_id" value="{item.id}"', page)   # no retry button
    assert "#confirm-retry" not in page                                 # nor "Retry N failed"
    assert control.retry_all_count(batch) == 0
    _b, retried, at_limit, needs_correction = control.retry(batch, users["sam"])
    assert (retried, at_limit, needs_correction) == (0, 0, 1)
    db.session.rollback()


def test_the_api_says_which_items_need_a_correction(api, users, failed):
    batch, item, _tasks = failed
    response = api("sam").post(f"/batches/{batch.id}/retry", json={"item_ids": [item.id]})
    assert response.status_code == 202
    assert (response.get_json()["retried"], response.get_json()["needs_correction"]) == (0, 1)


def test_the_correction_form_shows_the_values_and_errors_and_runs_the_item_again(
        client, users, failed):
    batch, item, tasks = failed
    login(client, "alice")
    url = f"/batches/{batch.id}/items/{item.id}/correct"
    form = _html(client.get(url))
    assert 'value="ten"' in form and "my note" in form and "Enter a number." in form
    token = csrf_token(client, url)
    still_wrong = client.post(url, data={"csrf_token": token, "action": "approve",
                                         "comment": "my note", "amount": "ten",
                                         "category": "Meals"})
    assert still_wrong.status_code == 422 and "Enter a number." in _html(still_wrong)
    assert db.session.get(BatchItem, item.id).status == "import_failed"

    done = client.post(url, data={"csrf_token": token, "action": "approve",
                                  "comment": "my note", "amount": "10", "category": "Meals"})
    assert done.status_code == 302
    db.session.expire_all()
    again = db.session.get(BatchItem, item.id)
    assert (again.status, again.retry_count, again.retried_by_id) == (
        "pending", 1, users["alice"].id)
    attempt = db.session.execute(db.select(BatchItemAttempt).where(
        BatchItemAttempt.item_id == item.id, BatchItemAttempt.outcome == "corrected")).scalar_one()
    assert attempt.previous_decision["form"]["amount"] == "ten"
    runner.run_inline(batch.id)
    db.session.expire_all()
    task = db.session.get(Task, tasks[1].id)
    assert task.outcome == "approve" and task.form["amount"] == 10
    batch = db.session.get(Batch, batch.id)
    assert (batch.status, batch.success, batch.failed) == ("finished", 2, 0)
    assert client.get(url).status_code == 302          # nothing left to correct


def test_only_people_who_may_see_the_batch_may_correct(client, users, failed):
    batch, item, _tasks = failed
    login(client, "carol")
    url = f"/batches/{batch.id}/items/{item.id}/correct"
    assert client.get(url).status_code == 404
    assert client.post(url, data={"csrf_token": csrf_token(client, "/"),
                                  "action": "approve"}).status_code == 404


def test_a_correction_takes_effect_once_and_keeps_the_counters(client, users, failed):
    """Two corrections of one item (two tabs, two people): the second finds it
    running again and changes nothing; the counters equal the items at each step."""
    from support import assert_counters_match_items
    from portal.batches import corrections
    from portal.errors import Conflict
    batch, item, tasks = failed
    good = {"amount": "10", "category": "Meals"}
    corrections.correct(batch, users["alice"], item.id, "approve", None, good)
    db.session.commit()
    assert_counters_match_items(batch.id)
    with pytest.raises(Conflict):
        corrections.correct(db.session.get(Batch, batch.id), users["sam"], item.id, "reject",
                            None, good)
    db.session.rollback()
    assert db.session.get(BatchItem, item.id).decision["action"] == "approve"
    runner.run_inline(batch.id)
    assert_counters_match_items(batch.id)
    assert db.session.execute(db.select(db.func.count(BatchItemAttempt.id)).where(
        BatchItemAttempt.item_id == item.id,
        BatchItemAttempt.outcome == "corrected")).scalar() == 1
    assert db.session.get(Task, tasks[1].id).outcome == "approve"


def _decision_entry(task):
    from portal.models import History
    db.session.expire_all()
    return db.session.execute(db.select(History).where(
        History.task_id == task.id, History.action.in_(("approve", "reject")))).scalar_one()


def test_a_supervisors_correction_is_recorded_as_their_decision_for_the_creator(client, api, users,
                                                                              failed):
    batch, item, tasks = failed
    login(client, "sam")
    url = f"/batches/{batch.id}/items/{item.id}/correct"
    response = client.post(url, data={"csrf_token": csrf_token(client, url), "action": "approve",
                                      "comment": "fixed", "amount": "10", "category": "Meals"})
    assert response.status_code == 302
    runner.run_inline(batch.id)
    entry = _decision_entry(tasks[1])
    assert (entry.user_id, entry.on_behalf_of_id) == (users["sam"].id, users["alice"].id)
    # the task is still the creator's: theirs to recall
    assert db.session.get(Task, tasks[1].id).completed_by_id == users["alice"].id
    # an approval the creator made themselves names no one else
    assert _decision_entry(tasks[0]).on_behalf_of_id is None

    history = api("admin").get(f"/instances/{tasks[1].instance_id}").get_json()["instance"]["history"]
    decided = next(h for h in history if h["action"] == "approve")
    assert (decided["user"], decided["on_behalf_of"]) == ("sam", "alice")
    assert all(h["on_behalf_of"] is None for h in history if h is not decided)

    page = _html(client.get(f"/instances/{tasks[1].instance_id}"))
    rows = page.split('id="history"')[1]
    assert re.search(r"sam\s*<span[^>]*data-on-behalf-of[^>]*>\s*for alice\s*</span>", rows), rows


def test_the_creators_own_correction_names_only_them(users, failed):
    from portal.batches import corrections
    batch, item, tasks = failed
    corrections.correct(batch, users["alice"], item.id, "approve", None, {"amount": "10", "category": "Meals"})
    db.session.commit()
    runner.run_inline(batch.id)
    entry = _decision_entry(tasks[1])
    assert (entry.user_id, entry.on_behalf_of_id) == (users["alice"].id, None)


def test_the_on_behalf_of_wording_is_translated(client, users, failed):
    batch, item, tasks = failed
    users["sam"].locale = "zh_CN"
    db.session.commit()
    login(client, "sam")
    url = f"/batches/{batch.id}/items/{item.id}/correct"
    client.post(url, data={"csrf_token": csrf_token(client, url), "action": "approve",
                           "amount": "10", "category": "Meals"})
    runner.run_inline(batch.id)
    rows = _html(client.get(f"/instances/{tasks[1].instance_id}")).split('id="history"')[1]
    assert re.search(r"data-on-behalf-of[^>]*>\s*代 alice\s*<", rows), rows
