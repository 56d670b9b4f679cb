"""Node templates in both modes: layout, dropdowns, marks, instructions, metadata."""
import io
import re
import zipfile

import openpyxl
import pytest

from support import GOOD_FORM
from portal.excel import layout
from portal.excel.meta import LISTS_SHEET, META_SHEET
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Node

from portal.workflow import engine, visibility
from excel_support import node_by_key as _node


def _open(data):
    return openpyxl.load_workbook(io.BytesIO(data))


def _validations(ws):
    """{sqref: (type, choices or formula1)} with list formulas resolved to their choices."""
    lists = ws.parent[LISTS_SHEET]
    found = {}
    for rule in ws.data_validations.dataValidation:
        value = rule.formula1
        match = re.fullmatch(r"'?_lists'?!\$([A-Z]+)\$1:\$[A-Z]+\$(\d+)", value or "")
        if rule.type == "list" and match:
            rows = range(1, int(match.group(2)) + 1)
            value = [lists[f"{match.group(1)}{row}"].value for row in rows]
        found[str(rule.sqref)] = (rule.type, value)
    return found


@pytest.fixture
def setup(factory):
    users = factory.standard(tasks=3)
    return users, _node()


def test_single_template_lists_only_the_callers_pending_tasks(setup):
    users, node = setup
    tasks = db.session.execute(visibility.pending_tasks_query(users["alice"], node_id=node.id)
                               .order_by("id")).scalars().all()
    engine.decide(tasks[0].id, users["alice"], "approve", "", GOOD_FORM)
    db.session.commit()
    book = _open(build_template(users["alice"], node, "single", "en"))
    ws = book.worksheets[0]                               # the data sheet comes first
    assert ws.title == "Tasks"
    header = [c.value for c in ws[1]]
    assert header == ["Task ID", "Title", "Action*", "Comment", "Amount*", "Category*",
                      "Paid on", "Urgent", "Note"]               # no table field in single mode
    ids = [row[0] for row in ws.iter_rows(min_row=2, values_only=True)]
    assert ids == [t.id for t in tasks[1:]]                 # the done task is gone
    assert ws["B2"].value == tasks[1].instance.title
    # bob has no tasks at the manager node: an empty template, headers only
    empty = _open(build_template(users["bob"], node, "single", "en")).worksheets[0]
    assert empty.max_row == 1


def test_single_template_dropdowns_cover_whole_columns(setup):
    users, node = setup
    ws = _open(build_template(users["alice"], node, "single", "en")).worksheets[0]
    rules = _validations(ws)
    assert rules["C2:C1048576"] == ("list", ["approve", "reject"])
    assert rules["F2:F1048576"] == ("list", ["Travel", "Meals"])      # select
    assert rules["H2:H1048576"] == ("list", ["yes", "no"])            # boolean
    assert rules["E2:E1048576"][0] == "decimal"                       # number, min 0
    assert rules["G2:G1048576"][0] == "date"
    assert rules["I2:I1048576"] == ("textLength", "200")              # note max_length
    assert not any(key.startswith(("A", "B")) for key in rules)        # read-only columns
    assert len(ws.data_validations.dataValidation) == len(rules)      # one rule per column


def test_required_and_read_only_headers_are_marked(setup):
    users, node = setup
    ws = _open(build_template(users["alice"], node, "single", "en")).worksheets[0]
    fills = {cell.value: cell.fill.fgColor.rgb for cell in ws[1]}
    assert fills["Amount*"] == fills["Action*"] != fills["Note"]
    assert fills["Task ID"] == fills["Title"] not in (fills["Amount*"], fills["Note"])
    assert ws["A1"].comment is not None and "keep it as it is" in ws["A1"].comment.text
    assert ws["B1"].comment is not None and "Not read" in ws["B1"].comment.text


def test_instructions_follow_the_locale_and_metadata_is_hidden(setup):
    users, node = setup
    book = _open(build_template(users["alice"], node, "single", "zh_CN"))
    rules = _validations(book.worksheets[0])
    assert rules["C2:C1048576"] == ("list", ["通过", "驳回"])
    assert rules["H2:H1048576"] == ("list", ["是", "否"])
    visible = [ws.title for ws in book.worksheets if ws.sheet_state == "visible"]
    assert len(visible) == 2                        # data + instructions
    meta = book[META_SHEET]
    assert meta.sheet_state == "veryHidden" and book[LISTS_SHEET].sheet_state == "veryHidden"
    pairs = {row[0]: row[1] for row in meta.iter_rows(values_only=True)}
    assert pairs["node_id"] == node.id and pairs["mode"] == "single"
    assert pairs["process_key"] == "expense" and pairs["process_version"] == 1
    assert pairs["format"] == layout.FORMAT_VERSION and pairs["locale"] == "zh_CN"
    instructions = book[visible[1]]
    text = "\n".join(str(r[0]) for r in instructions.iter_rows(values_only=True))
    assert "通过" in text and "Manager review" in text and "Amount" in text


def test_per_instance_template_has_a_sheet_per_task_with_table_sections(setup):
    users, node = setup
    tasks = db.session.execute(visibility.pending_tasks_query(users["alice"], node_id=node.id)
                               .order_by("id")).scalars().all()
    book = _open(build_template(users["alice"], node, "per_instance", "en"))
    assert book.worksheets[0].title == "Instructions" and book.active.title == "Instructions"
    assert [ws.title for ws in book.worksheets[1:len(tasks) + 1]] == [str(t.id) for t in tasks]
    ws = book[str(tasks[0].id)]
    column_a = [ws.cell(row=r, column=1).value for r in range(1, 13)]
    assert column_a == ["Task ID", "Title", "Action*", "Comment", "Amount*", "Category*",
                        "Paid on", "Urgent", "Note", None, "Lines", "Item*"]
    assert ws["B1"].value == tasks[0].id and ws["B2"].value == tasks[0].instance.title
    assert ws["B12"].value == "Cost"                   # the table's header row
    rules = _validations(ws)
    assert rules["B3"] == ("list", ["approve", "reject"])
    assert rules["B6"] == ("list", ["Travel", "Meals"])
    pairs = {row[0]: row[1] for row in book[META_SHEET].iter_rows(values_only=True)}
    assert pairs["mode"] == "per_instance"


def test_titles_are_never_written_as_formulas(factory):
    users = factory.standard()
    factory.tasks(1, starter=users["admin"], title="=HYPERLINK(\"http://x\")")
    node = _node()
    for mode in layout.MODES:
        data = build_template(users["alice"], node, mode, "en")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/")]
            assert sheets and not any(b"<f>" in archive.read(n) or b"<f " in archive.read(n)
                                      for n in sheets)
        first_task_sheet = 0 if mode == "single" else 1  # per-instance files open on the instructions
        title = _open(data).worksheets[first_task_sheet]["B2"].value
        assert title.startswith("=HYPERLINK")


def test_api_template_download(factory, client):
    users = factory.standard(tasks=2)
    node = _node()
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    for mode in layout.MODES:
        response = client.get(f"/api/v1/nodes/{node.id}/template?mode={mode}", headers=headers)
        assert response.status_code == 200
        assert response.mimetype == ("application/vnd.openxmlformats-officedocument."
                                     "spreadsheetml.sheet")
        assert re.search(rf"filename=expense-manager-{mode}-\d{{8}}\.xlsx",
                         response.headers["Content-Disposition"])
        assert _open(response.data)[META_SHEET] is not None
    assert client.get(f"/api/v1/nodes/{node.id}/template?mode=csv",
                      headers=headers).status_code == 400
    assert client.get("/api/v1/nodes/99999/template", headers=headers).status_code == 404
    assert client.get(f"/api/v1/nodes/{node.id}/template").status_code == 401


def test_a_template_says_when_it_lists_only_part_of_the_tasks(factory, app, monkeypatch):
    users = factory.standard(tasks=4)
    node = _node()
    monkeypatch.setitem(app.config, "MAX_TEMPLATE_SHEETS", 3)
    book = _open(build_template(users["alice"], node, "per_instance", "en"))
    assert len([ws for ws in book.worksheets if ws.title.isdigit()]) == 3
    text = " ".join(str(r[0]) for r in book["Instructions"].iter_rows(values_only=True))
    assert "lists 3 of your 4 pending tasks" in text
    single = _open(build_template(users["alice"], node, "single", "en"))
    assert single.worksheets[0].max_row == 5
    assert "pending tasks at this node, the oldest" not in " ".join(
        str(r[0]) for r in single["Instructions"].iter_rows(values_only=True))


def test_a_template_named_in_chinese_downloads_with_a_utf8_file_name(client, factory):
    from portal.workflow.process_files import load_definition
    users = factory.standard()
    load_definition({"key": "报销", "name": "报销", "nodes": [
        {"key": "经理审批", "name": "经理审批", "assignee": "user:alice", "fields": []}]})
    db.session.commit()
    factory.tasks(1, process_key="报销", starter=users["admin"])
    node = db.session.execute(db.select(Node).where(Node.key == "经理审批")).scalar_one()
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    response = client.get(f"/api/v1/nodes/{node.id}/template?mode=single", headers=headers)
    disposition = response.headers["Content-Disposition"]
    assert response.status_code == 200
    assert re.search(r"filename\*=UTF-8''%E6%8A%A5%E9%94%80-%E7%BB%8F%E7%90%86%E5%AE%A1%E6%89%B9-single-\d{8}\.xlsx",
                     disposition), disposition
