"""The dry run: per-row and per-sheet problems, eligibility, nothing written."""
import io

import openpyxl
import pytest

from support import GOOD_FORM
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Task
from portal.workflow import engine
from excel_support import import_env, save, single_file


@pytest.fixture
def env(factory):
    return import_env(factory)

COLUMNS = "CDEFGHI"   # action, comment, amount, category, paid_on, urgent, note


def dry_run(client, headers, node, data, mode="single"):
    response = client.post("/api/v1/imports", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(data), "f.xlsx"), "node_id": str(node.id),
                                 "mode": mode, "dry_run": "1"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["preview"]


def test_each_problem_is_reported_with_its_row_and_column(client, env):
    users, tasks, headers, node = env
    engine.decide(tasks[3].id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    template = build_template(users["alice"], node, "single", "en")
    good = {"C": "approve", "E": 12, "F": "Travel"}
    data = single_file(template, [
        (tasks[0].id, good),                                             # row 2: valid
        (tasks[1].id, {"C": "approve", "F": "Bus", "G": "next week"}),   # row 3
        (tasks[2].id, {"C": "maybe", "D": "x" * 2001}),                  # row 4
        (tasks[0].id, good),                                             # row 5: duplicate
        (999999, good),                                                  # row 6: unknown
        ("abc", good),                                                   # row 7
        (tasks[3].id, good),                                             # row 8: done
        (tasks[2].id, {}),                                               # row 9: untouched
    ])
    preview = dry_run(client, headers, node, data)
    assert preview["valid"] == 1 and preview["skipped"] == 1
    problems = {p["row"]: p for p in preview["invalid"]}
    assert sorted(problems) == [3, 4, 5, 6, 7, 8]
    assert set(problems[3]["errors"]) == {"amount", "category", "paid_on"}
    assert problems[3]["task_id"] == tasks[1].id
    assert set(problems[4]["errors"]) == {"action", "comment"}
    assert problems[5]["reason"] == "duplicate"
    assert "more than once" in problems[5]["errors"]["task_id"]
    assert problems[6]["reason"] == "unavailable"
    assert problems[7]["task_id"] is None and "whole number" in problems[7]["errors"]["task_id"]
    assert problems[8]["reason"] == "done"
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 0
    assert db.session.execute(db.select(db.func.count(BatchItem.id))).scalar() == 0


def test_actions_in_either_language(client, env):
    users, tasks, headers, node = env
    template = build_template(users["alice"], node, "single", "zh_CN")
    form = {"E": 1, "F": "Meals"}
    data = single_file(template, [(tasks[0].id, {"C": "通过", **form}),
                                  (tasks[1].id, {"C": "驳回"}),
                                  (tasks[2].id, {"C": " Approve ", **form}),
                                  (tasks[3].id, {"C": "REJECT"})])
    assert dry_run(client, headers, node, data) == {"valid": 4, "invalid": [], "skipped": 0}


def test_tasks_of_someone_else_are_reported(client, env, factory):
    users, tasks, headers, node = env
    template = build_template(users["alice"], node, "single", "en")
    data = single_file(template, [(tasks[0].id, {"C": "reject"})])
    carol = {"Authorization": f"Bearer {factory.token(users['carol'])}"}
    preview = dry_run(client, carol, node, data)
    assert preview["valid"] == 0
    assert preview["invalid"][0]["reason"] == "unavailable"
    # a task of another node (bob's finance task) is refused for the manager node
    engine.decide(tasks[0].id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    finance_task = db.session.execute(db.select(Task).where(Task.status == "pending",
                                                            Task.node_id != node.id)).scalar_one()
    bob = {"Authorization": f"Bearer {factory.token(users['bob'])}"}
    data = single_file(template, [(finance_task.id, {"C": "reject"})])
    assert dry_run(client, bob, node, data)["invalid"][0]["reason"] == "wrong_node"


def per_instance_file(template, sheets):
    """``sheets``: {task id: {"values": {row: value}, "lines": [[item, cost]]}}."""
    book = openpyxl.load_workbook(io.BytesIO(template))
    for task_id, content in sheets.items():
        ws = book[str(task_id)]
        for row, value in content.get("values", {}).items():
            ws.cell(row=row, column=2, value=value)
        for offset, line in enumerate(content.get("lines", [])):
            for column, value in enumerate(line, start=1):
                ws.cell(row=13 + offset, column=column, value=value)
    return save(book)


def test_per_instance_problems_are_reported_per_sheet(client, env):
    users, tasks, headers, node = env
    template = build_template(users["alice"], node, "per_instance", "en")
    approve = {3: "approve", 5: 40, 6: "Travel"}
    data = per_instance_file(template, {
        tasks[0].id: {"values": approve, "lines": [["Taxi", 12.5], ["Hotel", 80]]},
        tasks[1].id: {"values": approve, "lines": [["Taxi", "lots"], [None, 3]]},
        tasks[2].id: {"values": {3: "approve", 5: -1, 6: "Travel"}},
    })
    preview = dry_run(client, headers, node, data, mode="per_instance")
    assert preview["valid"] == 1 and preview["skipped"] == 1          # tasks[3] untouched
    problems = {p["sheet"]: p for p in preview["invalid"]}
    assert set(problems) == {str(tasks[1].id), str(tasks[2].id)}
    lines_error = problems[str(tasks[1].id)]["errors"]["lines"]
    assert "Row 1" in lines_error and "Row 2" in lines_error
    assert set(problems[str(tasks[2].id)]["errors"]) == {"amount"}
    assert problems[str(tasks[2].id)]["task_id"] == tasks[2].id


def test_a_renamed_sheet_that_holds_another_task_is_reported(client, env):
    users, tasks, headers, node = env
    template = build_template(users["alice"], node, "per_instance", "en")
    book = openpyxl.load_workbook(io.BytesIO(template))
    book[str(tasks[0].id)]["B1"] = tasks[1].id
    book[str(tasks[0].id)]["B3"] = "reject"
    preview = dry_run(client, headers, node, save(book), mode="per_instance")
    assert preview["invalid"][0]["sheet"] == str(tasks[0].id)
    assert "holds task" in preview["invalid"][0]["errors"]["task_id"]
