"""Excel import in a real browser: download the template, fill it in, upload it,
see the preview, confirm, land on the batch page, download the error workbook,
correct it and upload it again. The batch runs in this process (run_inline)."""
import io
import re

import openpyxl
import pytest

from browser.conftest import browser_login
from portal.batches import runner
from portal.excel import layout
from portal.infra.extensions import db
from portal.jobs.excel_jobs import build_error_file
from portal.models import Batch, Node, Task

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _setup(factory):
    factory.standard(tasks=3)
    node_id = db.session.execute(db.select(Node.id).where(Node.key == "manager")).scalar_one()
    task_ids = list(db.session.execute(db.select(Task.id).order_by(Task.id)).scalars())
    db.session.rollback()   # SQLite: an open transaction would block the server's writes
    return node_id, task_ids


def _download(page, selector):
    with page.expect_download() as info:
        page.click(selector)
    with open(info.value.path(), "rb") as fh:
        return info.value.suggested_filename, fh.read()


def _upload(page, content, filename="filled.xlsx"):
    page.set_input_files("#file", files=[{"name": filename, "mimeType": XLSX,
                                          "buffer": content}])
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/imports/\d+$"))


def _save(book):
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_template_upload_preview_confirm_and_error_workbook(page, factory, language):
    node_id, task_ids = _setup(factory)
    approve = layout.ACTION_LABELS[language][0]
    browser_login(page, "alice")
    page.wait_for_url(re.compile(r"/$"))
    page.goto(f"{page.base}/nodes/{node_id}/import")
    page.click("#lang-menu")
    with page.expect_navigation():
        page.click(f"form[data-language={language}] [type=submit]")

    name, template = _download(page, "#template-single")
    assert re.fullmatch(r"expense-manager-single-\d{8}\.xlsx", name), name
    book = openpyxl.load_workbook(io.BytesIO(template))
    ws = book.worksheets[0]
    assert [ws.cell(row=r, column=1).value for r in range(2, 5)] == task_ids
    ws["C2"], ws["E2"], ws["F2"] = approve, 10, "Travel"
    ws["C3"], ws["E3"], ws["F3"] = approve, "ten", "Travel"       # an amount that is not one
    _upload(page, _save(book))

    assert page.locator("#preview-valid .fs-4").inner_text() == "1"
    assert page.locator("#preview-invalid .fs-4").inner_text() == "1"
    assert page.locator("#preview-skipped .fs-4").inner_text() == "1"
    problem = page.locator("#preview-problems tbody tr").first.inner_text()
    assert str(task_ids[1]) in problem and "E (Amount)" in problem

    page.click("#confirm-import")
    page.wait_for_url(re.compile(r"/batches/\d+$"))
    batch_id = int(page.url.rsplit("/", 1)[1])
    runner.run_inline(batch_id)
    build_error_file(batch_id)
    db.session.rollback()

    page.goto(f"{page.base}/batches/{batch_id}/corrections")
    name, errors = _download(page, "#error-file-link")
    number = db.session.get(Batch, batch_id).number
    db.session.rollback()
    assert name == f"{number}-errors.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(errors)).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][-1] == "Error" and [r[0] for r in rows[1:]] == [task_ids[1]]

    # corrected in "Excel" and uploaded again: a new batch retries that task
    book = openpyxl.load_workbook(io.BytesIO(errors))
    book.worksheets[0]["E2"] = 11
    _upload(page, _save(book), filename=name)
    assert page.locator("#preview-valid .fs-4").inner_text() == "1"
    assert number in page.content()
    page.click("#confirm-import")
    page.wait_for_url(re.compile(r"/batches/\d+$"))
    retry_id = int(page.url.rsplit("/", 1)[1])
    runner.run_inline(retry_id)
    retry = db.session.get(Batch, retry_id)
    assert (retry.source_batch_id, retry.success) == (batch_id, 1)
    assert db.session.get(Task, task_ids[1]).form == {"amount": 11, "category": "Travel"}
    db.session.rollback()
