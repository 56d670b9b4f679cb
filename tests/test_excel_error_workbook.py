"""Error workbooks: the failed items in the template's layout, stored in the
database, remade after retries, never holding a formula; and the corrected
workbook uploaded again."""
import io
import zipfile

import openpyxl
import pytest

from support import GOOD_FORM
from portal.accounts import set_disabled
from portal.batches import control, creation, runner
from portal.excel.compose import build_workbook
from portal.excel.meta import META_SHEET
from portal.excel.templates import build_template
from portal.excel.writer import ERROR_FILL, TaskValues
from portal.infra.extensions import db
from portal.jobs.excel_jobs import build_error_file
from portal.models import Batch, BatchFile, BatchItem, Task
from portal.workflow import engine
from excel_support import import_env, save, upload
from excel_support import single_file as shared_single_file


@pytest.fixture
def env(factory):
    return import_env(factory)

NASTY = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1,2)", "\tTAB=1", "\r=1+1"]


def single_file(template, rows):
    """Like excel_support.single_file, writing every value as text."""
    return shared_single_file(template, rows, set_cell=text)


def text(ws, ref, value):
    """Set a cell the way a user's typed text arrives: text stays text, even "=..."."""
    ws[ref] = value
    if isinstance(value, str):
        ws[ref].data_type = "s"


def error_book(batch_id):
    batch = db.session.get(Batch, batch_id, populate_existing=True)
    return openpyxl.load_workbook(io.BytesIO(batch.error_file.content))


def formulas_in(content):
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return [name for name in archive.namelist() if name.endswith(".xml")
                and (b"<f>" in archive.read(name) or b"<f " in archive.read(name))]


@pytest.fixture
def failed_import(client, env):
    """A finished single-mode batch: two good rows, two rows that failed to import."""
    users, tasks, headers, node = env
    template = build_template(users["alice"], node, "single", "en")
    data = single_file(template, [
        (tasks[0].id, {"C": "approve", "E": 5, "F": "Travel"}),
        (tasks[1].id, {"C": "approve", "D": NASTY[0], "E": "five", "F": "Travel",
                       "I": NASTY[1]}),
        (tasks[2].id, {"C": "maybe", "D": NASTY[2], "I": NASTY[3]}),
        (tasks[3].id, {"C": "reject", "D": NASTY[4]}),
    ])
    batch_id = upload(client, headers, node, data).get_json()["batch"]["id"]
    runner.run_inline(batch_id)
    return batch_id


def test_error_workbook_holds_only_failed_items_in_the_template_layout(env, failed_import):
    users, tasks, headers, node = env
    file_id = build_error_file(failed_import)
    batch = db.session.get(Batch, failed_import)
    assert batch.error_file_id == file_id
    stored = db.session.get(BatchFile, file_id)
    assert (stored.kind, stored.filename) == ("error", f"{batch.number}-errors.xlsx")
    book = error_book(failed_import)
    ws = book.worksheets[0]
    header = [c.value for c in ws[1]]
    assert header == ["Task ID", "Title", "Action*", "Comment", "Amount*", "Category*",
                      "Paid on", "Urgent", "Note", "Error"]
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows] == [tasks[1].id, tasks[2].id]
    assert rows[0][1] == tasks[1].instance.title
    assert rows[0][4] == "five" and "Amount" in rows[0][9]
    assert rows[1][2] == "maybe" and "Action" in rows[1][9]
    # the faulty cells, and only those, are highlighted
    red = ERROR_FILL.fgColor.rgb
    assert ws["E2"].fill.fgColor.rgb == red and ws["C3"].fill.fgColor.rgb == red
    assert ws["F2"].fill.fgColor.rgb != red and ws["D3"].fill.fgColor.rgb != red
    pairs = {r[0]: r[1] for r in book[META_SHEET].iter_rows(values_only=True)}
    assert pairs["kind"] == "errors" and pairs["batch_id"] == failed_import


def test_user_text_is_never_written_as_a_formula(env, failed_import):
    build_error_file(failed_import)
    batch = db.session.get(Batch, failed_import)
    assert formulas_in(batch.error_file.content) == []
    ws = error_book(failed_import).worksheets[0]
    written = {ws["D2"].value, ws["I2"].value, ws["D3"].value, ws["I3"].value}
    assert written == set(NASTY[:4])
    assert all(ws[ref].data_type == "s" for ref in ("D2", "I2", "D3", "I3"))


def test_every_risky_text_stays_text(env):
    users, tasks, headers, node = env
    rows = [TaskValues({"task_id": number, "title": text, "comment": text, "note": text},
                       error=text) for number, text in enumerate(NASTY, start=1)]
    for mode in ("single", "per_instance"):
        content = build_workbook(node, mode, iter(rows), locale="en", kind="errors")
        assert formulas_in(content) == []
    ws = openpyxl.load_workbook(io.BytesIO(build_workbook(
        node, "single", iter(rows), locale="en", kind="errors"))).worksheets[0]
    for number, text in enumerate(NASTY, start=2):
        for ref in (f"B{number}", f"D{number}", f"I{number}", f"J{number}"):
            assert ws[ref].data_type == "s"
            assert ws[ref].value.replace("\n", "\r") == text   # XML may turn CR into LF


def test_rebuilding_is_idempotent_and_follows_retries(env, factory):
    users, tasks, headers, node = env
    batch = creation.create_batch(users["alice"], node, task_ids=[t.id for t in tasks[:2]],
                                  action="approve", form=GOOD_FORM)
    set_disabled(users["alice"], True)
    db.session.commit()
    runner.run_inline(batch.id)
    assert db.session.get(Batch, batch.id, populate_existing=True).failed == 2
    first = build_error_file(batch.id)
    assert build_error_file(batch.id) == first           # replaced in place, not duplicated
    assert db.session.execute(db.select(db.func.count(BatchFile.id))).scalar() == 1
    # a form batch's error workbook uses the single layout with the shared values
    rows = list(error_book(batch.id).worksheets[0].iter_rows(min_row=2, values_only=True))
    assert [(r[0], r[2], r[4], r[5]) for r in rows] == [
        (tasks[0].id, "approve", 12.5, "Travel"), (tasks[1].id, "approve", 12.5, "Travel")]
    assert "disabled" in rows[0][9]

    set_disabled(users["alice"], False)
    control.retry(db.session.get(Batch, batch.id), users["sam"], [
        db.session.execute(db.select(BatchItem.id).where(
            BatchItem.batch_id == batch.id, BatchItem.task_id == tasks[0].id)).scalar()])
    db.session.commit()
    runner.run_inline(batch.id)
    build_error_file(batch.id)
    rows = list(error_book(batch.id).worksheets[0].iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows] == [tasks[1].id]          # remade with what still fails
    control.retry(db.session.get(Batch, batch.id), users["sam"])
    db.session.commit()
    runner.run_inline(batch.id)
    assert build_error_file(batch.id) is None             # nothing failed any more
    batch = db.session.get(Batch, batch.id, populate_existing=True)
    assert batch.error_file_id is None
    assert db.session.execute(db.select(db.func.count(BatchFile.id))).scalar() == 0


def test_per_instance_error_workbook_ends_with_an_error_row(client, env):
    users, tasks, headers, node = env
    book = openpyxl.load_workbook(io.BytesIO(build_template(users["alice"], node,
                                                            "per_instance", "en")))
    ws = book[str(tasks[0].id)]
    ws["B3"], ws["B5"], ws["B6"] = "approve", -5, "Travel"
    text(ws, "B4", NASTY[0])
    ws["A13"], ws["B13"] = "Taxi", 4
    response = upload(client, headers, node, save(book), mode="per_instance")
    batch_id = response.get_json()["batch"]["id"]
    build_error_file(batch_id)
    content = db.session.get(Batch, batch_id).error_file.content
    assert formulas_in(content) == []
    errors = openpyxl.load_workbook(io.BytesIO(content))
    sheet = errors[str(tasks[0].id)]
    assert [ws.title for ws in errors.worksheets[:2]] == ["Instructions", str(tasks[0].id)]
    assert sheet["B4"].value == NASTY[0] and sheet["B5"].value == -5
    assert sheet["B5"].fill.fgColor.rgb == ERROR_FILL.fgColor.rgb
    assert (sheet["A13"].value, sheet["B13"].value) == ("Taxi", 4)
    last = sheet.max_row
    assert sheet.cell(row=last, column=1).value == "Error"
    assert "Amount" in sheet.cell(row=last, column=2).value

    # corrected and uploaded again: the Error row is ignored, the task retried
    sheet["B5"] = 5
    response = upload(client, headers, node, save(errors), mode="per_instance")
    assert response.status_code == 202, response.get_data(as_text=True)
    retry = response.get_json()["batch"]
    assert retry["source_batch_id"] == batch_id and retry["pending"] == 1
    runner.run_inline(retry["id"])
    db.session.expire_all()
    task = db.session.get(Task, tasks[0].id)
    assert task.outcome == "approve" and task.form["lines"] == [{"item": "Taxi", "cost": 4}]


def test_corrected_error_workbook_retries_exactly_the_failed_items(client, env, failed_import):
    users, tasks, headers, node = env
    build_error_file(failed_import)
    book = error_book(failed_import)
    ws = book.worksheets[0]
    ws["E2"] = 50                                   # task 1: the amount fixed
    ws["C3"] = "reject"                             # task 2: a valid action now
    ws["A4"], ws["C4"] = tasks[0].id, "reject"      # not a failed item of that batch
    data = save(book)
    preview = upload(client, headers, node, data, dry_run=True).get_json()["preview"]
    assert preview["valid"] == 2
    assert [(p["row"], p["task_id"]) for p in preview["invalid"]] == [(4, tasks[0].id)]
    assert "failed items" in preview["invalid"][0]["errors"]["task_id"]

    response = upload(client, headers, node, data)
    assert response.status_code == 202
    retry = response.get_json()["batch"]
    assert retry["source_batch_id"] == failed_import
    assert (retry["total"], retry["pending"]) == (2, 2)
    runner.run_inline(retry["id"])
    db.session.expire_all()
    assert db.session.get(Task, tasks[1].id).form == {"amount": 50, "category": "Travel",
                                                       "note": NASTY[1]}
    assert db.session.get(Task, tasks[2].id).outcome == "reject"
    assert db.session.get(Batch, retry["id"]).failed == 0


def _zip_parts(data):
    """The workbook's parts, less the save time openpyxl stamps into docProps/core.xml
    (two builds a second apart differ there and nowhere else)."""
    import re
    import zipfile
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    parts["docProps/core.xml"] = re.sub(rb"<dcterms:(created|modified)[^>]*>[^<]*</dcterms:\1>",
                                        b"", parts["docProps/core.xml"])
    return parts


def test_error_file_download_follows_batch_visibility(client, env, factory, failed_import):
    users, tasks, headers, node = env
    url = f"/api/v1/batches/{failed_import}/error-file"
    assert client.get(url, headers=headers).status_code == 200          # built on demand
    build_error_file(failed_import)
    response = client.get(url, headers=headers)
    batch = db.session.get(Batch, failed_import)
    assert response.status_code == 200
    assert f"filename={batch.number}-errors.xlsx" in response.headers["Content-Disposition"]
    assert _zip_parts(response.data) == _zip_parts(batch.error_file.content)  # same workbook; zip times may differ
    sam = {"Authorization": f"Bearer {factory.token(users['sam'])}"}
    carol = {"Authorization": f"Bearer {factory.token(users['carol'])}"}
    assert client.get(url, headers=sam).status_code == 200
    assert client.get(url, headers=carol).status_code == 404
    assert client.get("/api/v1/batches/424242/error-file", headers=headers).status_code == 404


def test_an_error_workbook_of_a_batch_the_user_cannot_see_is_refused(client, env, factory,
                                                                     failed_import):
    users, tasks, headers, node = env
    build_error_file(failed_import)
    data = db.session.get(Batch, failed_import).error_file.content
    carol = {"Authorization": f"Bearer {factory.token(users['carol'])}"}
    response = upload(client, carol, node, data, dry_run=True)
    assert response.status_code == 400 and "cannot see" in response.get_json()["error"]


def test_the_error_workbook_lists_only_failures_still_open_and_links_its_corrections(
        client, env, failed_import):
    """Fixed through a correction batch (or by hand), a failure leaves the workbook;
    with none left the download says so, and both batches link to each other."""
    from support import login
    users, tasks, headers, node = env
    url = f"/api/v1/batches/{failed_import}/error-file"
    book = openpyxl.load_workbook(io.BytesIO(client.get(url, headers=headers).data))
    ws = book.worksheets[0]
    assert [ws.cell(row=r, column=1).value for r in (2, 3)] == [tasks[1].id, tasks[2].id]
    ws["E2"] = 50                                   # task 1 fixed, task 2 left as it was
    ws.delete_rows(3)
    correction = upload(client, headers, node, save(book)).get_json()["batch"]
    runner.run_inline(correction["id"])
    book = openpyxl.load_workbook(io.BytesIO(client.get(url, headers=headers).data))
    assert [row[0] for row in book.worksheets[0].iter_rows(min_row=2, values_only=True)
            if row[0] is not None] == [tasks[2].id]
    engine.decide(tasks[2].id, users["alice"], "reject", "by hand", {})
    db.session.commit()
    assert client.get(url, headers=headers).status_code == 404
    build_error_file(failed_import)                  # what the correction's end enqueues
    assert db.session.get(Batch, failed_import, populate_existing=True).error_file is None
    login(client, "alice")
    page = client.get(f"/batches/{failed_import}").get_data(as_text=True)
    assert f'href="/batches/{correction["id"]}" data-correction' in page
    assert "data-error-file" not in page
    back = client.get(f"/batches/{correction['id']}").get_data(as_text=True)
    assert f'href="/batches/{failed_import}" data-source-batch' in back
