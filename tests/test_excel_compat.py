"""Files as Excel, LibreOffice and WPS save them: shared strings, dates as
serials or text, numbers as text, formulas with cached values, hidden columns
and trailing empty rows. The data sheet is rewritten by hand the way those
programs write it, inside a real template (so its metadata stays)."""
import io
import zipfile

import pytest

from portal.batches import imports, runner
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Node, Task

NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
STRINGS = ["Task ID", "Title", "Action*", "Comment", "Amount*", "Category*", "Paid on",
           "Urgent", "Note", "approve", "Travel", "Meals", "REJECT", "wrong amount"]
SHARED_STRINGS_TYPE = ("application/vnd.openxmlformats-officedocument.spreadsheetml."
                       "sharedStrings+xml")
SHARED_STRINGS_REL = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
                      "sharedStrings")


def shared(text):
    return f'<v>{STRINGS.index(text)}</v>'


def sheet_xml(ids):
    first, second, third = ids
    header = "".join(f'<c r="{col}1" t="s">{shared(text)}</c>'
                     for col, text in zip("ABCDEFGHI", STRINGS[:9]))
    rows = [
        f'<row r="1">{header}</row>',
        # Excel: numbers as numbers, shared strings, a date as a bare serial (no style),
        # a number typed as text with a thousands separator
        f'<row r="2"><c r="A2"><v>{first}</v></c><c r="C2" t="s">{shared("approve")}</c>'
        f'<c r="D2" t="str"><f>"from "&amp;"formula"</f><v>from formula</v></c>'
        f'<c r="E2" t="inlineStr"><is><t>1,234.50</t></is></c>'
        f'<c r="F2" t="s">{shared("Travel")}</c><c r="G2"><v>45296</v></c></row>',
        # LibreOffice/WPS: the task id as text, the action in Chinese, a formula with a
        # cached number, a date as text, a boolean, text that looks like a formula
        f'<row r="3"><c r="A3" t="inlineStr"><is><t>{second}</t></is></c>'
        f'<c r="C3" t="inlineStr"><is><t>通过</t></is></c>'
        f'<c r="E3"><f>10+5</f><v>15</v></c><c r="F3" t="s">{shared("Meals")}</c>'
        f'<c r="G3" t="inlineStr"><is><t>2024/01/06</t></is></c><c r="H3" t="b"><v>1</v></c>'
        f'<c r="I3" t="inlineStr"><is><t>=SUM(A1:A2)</t></is></c></row>',
        # upper-case action; a formula that was never calculated counts as empty
        f'<row r="4"><c r="A4"><v>{third}.0</v></c><c r="C4" t="s">{shared("REJECT")}</c>'
        f'<c r="D4"><f>1+1</f></c></row>',
        # trailing rows: styled but empty cells, an empty row far below
        '<row r="5"><c r="A5" s="0"/><c r="C5" s="0"/></row>',
        '<row r="900" spans="1:9"/>',
    ]
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet {NS}>'
            '<dimension ref="A1:I900"/><cols><col min="2" max="2" width="0" hidden="1"/></cols>'
            f'<sheetData>{"".join(rows)}</sheetData></worksheet>').encode()


def shared_strings_xml():
    items = "".join(f"<si><t>{text}</t></si>" for text in STRINGS)
    return (f'<?xml version="1.0" encoding="UTF-8"?><sst {NS} count="{len(STRINGS)}" '
            f'uniqueCount="{len(STRINGS)}">{items}</sst>').encode()


def as_saved_by_another_program(template, ids):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = sheet_xml(ids)
            elif info.filename == "[Content_Types].xml":
                content = content.replace(b"</Types>", (
                    f'<Override PartName="/xl/sharedStrings.xml" ContentType='
                    f'"{SHARED_STRINGS_TYPE}"/></Types>').encode())
            elif info.filename == "xl/_rels/workbook.xml.rels":
                content = content.replace(b"</Relationships>", (
                    f'<Relationship Type="{SHARED_STRINGS_REL}" Target="sharedStrings.xml" '
                    f'Id="rId99"/></Relationships>').encode())
            target.writestr(info.filename, content)
        target.writestr("xl/sharedStrings.xml", shared_strings_xml())
    return out.getvalue()


@pytest.fixture
def saved(factory):
    users = factory.standard(tasks=3)
    node = db.session.execute(db.select(Node).where(Node.key == "manager")).scalar_one()
    ids = [t.id for t in db.session.execute(db.select(Task).order_by(Task.id)).scalars()]
    data = as_saved_by_another_program(build_template(users["alice"], node, "single", "en"), ids)
    return users["alice"], node, ids, data


def test_preview_reads_every_encoding(saved):
    alice, node, ids, data = saved
    assert imports.preview_upload(alice, node, "single", data) == {
        "valid": 3, "invalid": [], "skipped": 0}


def test_values_reach_the_tasks_as_the_user_saw_them(saved):
    alice, node, ids, data = saved
    batch = imports.create_import_batch(alice, node, "single", data)
    db.session.commit()
    assert (batch.total, batch.pending, batch.mode) == (3, 3, "single")
    runner.run_inline(batch.id)
    db.session.expire_all()
    first, second, third = (db.session.get(Task, i) for i in ids)
    assert first.outcome == "approve" and first.comment == "from formula"
    assert first.form == {"amount": 1234.5, "category": "Travel", "paid_on": "2024-01-05"}
    assert second.outcome == "approve"
    assert second.form == {"amount": 15, "category": "Meals", "paid_on": "2024-01-06",
                           "urgent": True, "note": "=SUM(A1:A2)"}
    assert third.outcome == "reject" and third.comment is None
