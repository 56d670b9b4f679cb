"""Imports that make batches: per-task decisions, import_failed items, both modes."""
import io

import openpyxl
import pytest

from support import counts_from_items
from portal.batches import runner
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Task
from portal.models.uploads import PendingUpload
from excel_support import import_env, save, single_file, upload


@pytest.fixture
def env(factory):
    return import_env(factory)


def items_by_task(batch_id):
    return {i.task_id: i for i in db.session.execute(
        db.select(BatchItem).where(BatchItem.batch_id == batch_id)).scalars()}


def test_single_mode_batch_carries_each_rows_own_decision(client, env):
    users, tasks, headers, node = env
    template = build_template(users["alice"], node, "single", "en")
    data = single_file(template, [
        (tasks[0].id, {"C": "approve", "D": "first", "E": 10, "F": "Travel"}),
        (tasks[1].id, {"C": "approve", "D": "second", "E": 20, "F": "Meals", "H": "yes"}),
        (tasks[2].id, {"C": "approve", "E": "ten"}),                  # invalid
        (tasks[3].id, {"C": "reject", "D": "no"}),
        (tasks[0].id, {"C": "reject"}),                               # duplicate
    ])
    response = upload(client, headers, node, data)
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()["batch"]
    assert body["mode"] == "single" and body["node_id"] == node.id
    assert (body["total"], body["pending"], body["failed"], body["ignored"]) == (5, 3, 1, 1)
    batch = db.session.get(Batch, body["id"])
    items = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)
                               .order_by(BatchItem.id)).scalars().all()
    assert [i.source_ref for i in items] == ["row 2", "row 3", "row 4", "row 5", None]
    failed = items[2]
    assert failed.status == "import_failed" and set(failed.field_errors) == {"amount", "category"}
    assert "Amount" in failed.error and failed.decision["form"]["amount"] == "ten"
    assert items[4].status == "ignored" and items[4].error_kind == "duplicate"
    locked = db.session.get(Task, tasks[2].id)
    assert locked.lock_batch_id is None          # an import_failed task stays free

    runner.run_inline(batch.id)
    db.session.expire_all()
    done = {t.id: t for t in db.session.execute(db.select(Task)).scalars()}
    assert (done[tasks[0].id].outcome, done[tasks[0].id].comment) == ("approve", "first")
    assert done[tasks[0].id].form == {"amount": 10, "category": "Travel"}
    assert done[tasks[1].id].form == {"amount": 20, "category": "Meals", "urgent": True}
    assert done[tasks[3].id].outcome == "reject"
    assert done[tasks[2].id].status == "pending"
    batch = db.session.get(Batch, batch.id)
    assert batch.status == "finished" and batch.with_errors
    assert counts_from_items(batch.id) == {"pending": 0, "running": 0, "success": 3, "ignored": 1,
                                           "failed": 1, "cancelled": 0}


def test_per_instance_batch_with_table_lines(client, env):
    users, tasks, headers, node = env
    book = openpyxl.load_workbook(io.BytesIO(build_template(users["alice"], node,
                                                            "per_instance", "en")))
    ws = book[str(tasks[0].id)]
    ws["B3"], ws["B4"], ws["B5"], ws["B6"], ws["B7"] = "approve", "see lines", 92.5, "Travel", \
        "2024-03-01"
    ws["A13"], ws["B13"], ws["A14"], ws["B14"] = "Taxi", 12.5, "Hotel", 80
    book[str(tasks[1].id)]["B3"] = "reject"
    response = upload(client, headers, node, save(book), mode="per_instance")
    assert response.status_code == 202
    batch_id = response.get_json()["batch"]["id"]
    assert response.get_json()["batch"]["mode"] == "per_instance"
    assert {i.source_ref for i in items_by_task(batch_id).values()} == {
        f"sheet {tasks[0].id}", f"sheet {tasks[1].id}"}
    runner.run_inline(batch_id)
    db.session.expire_all()
    first = db.session.get(Task, tasks[0].id)
    assert first.comment == "see lines"
    assert first.form == {"amount": 92.5, "category": "Travel", "paid_on": "2024-03-01",
                          "lines": [{"item": "Taxi", "cost": 12.5}, {"item": "Hotel", "cost": 80}]}
    assert db.session.get(Task, tasks[1].id).outcome == "reject"


def test_a_file_without_any_decision_is_refused(client, env):
    users, tasks, headers, node = env
    response = upload(client, headers, node, build_template(users["alice"], node, "single", "en"))
    assert response.status_code == 400
    assert "no decision" in response.get_json()["error"]
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 0


def test_an_import_where_every_row_fails_still_records_them(client, env):
    users, tasks, headers, node = env
    template = build_template(users["alice"], node, "single", "en")
    response = upload(client, headers, node, single_file(template, [
        (tasks[0].id, {"C": "approve"})]))
    body = response.get_json()["batch"]
    assert response.status_code == 202
    assert (body["status"], body["failed"], body["pending"]) == ("finished", 1, 0)
    assert db.session.execute(db.select(db.func.count(PendingUpload.id))).scalar() == 0
