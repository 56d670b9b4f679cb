"""A hostile workbook can neither crash nor stall the portal.

python-calamine allocates the whole rectangle from the first to the last cell
of a sheet, and a failed allocation aborts the process: a 5 KB file with cells
at A1 and XFD1048576 asks for ~550 GB. Such files are refused with a 400 that
names the sheet and the limit before any reader sees them, and the workbook is
read in a child process with memory and time limits, so that whatever slips
through costs one request. Files are hand-edited real templates (their
metadata is right), or built with openpyxl.
"""
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import zipfile
from datetime import date

import openpyxl
import psutil
import pytest

from support import csrf_token, login
from excel_support import edit_sheet, import_env, rezip, sheet_part, single_file, upload
from portal.excel import UnusableFile, extents, reader, safety, sandbox
from portal.excel.meta import META_SHEET
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Batch, BatchItem
from portal.models.uploads import PendingUpload

TASKS = "Tasks"                       # the data sheet of an English single-mode template
TEXT_CELL = '<c r="{ref}" t="inlineStr"><is><t>x</t></is></c>'
BARE_CELL = '<c t="inlineStr"><is><t>x</t></is></c>'


def count(model):
    return db.session.execute(db.select(db.func.count(model.id))).scalar()


def assert_nothing_created():
    assert (count(Batch), count(BatchItem), count(PendingUpload)) == (0, 0, 0)


def rows_before_end(rows):
    return lambda xml: xml.replace("</sheetData>", rows + "</sheetData>")


def dimension(ref):
    return lambda xml: re.sub(r"(<worksheet[^>]*>)", rf'\1<dimension ref="{ref}"/>', xml,
                              count=1)


def far_cell(ref, row):
    return rows_before_end(f'<row r="{row}">{TEXT_CELL.format(ref=ref)}</row>')


HOSTILE = {
    "A1 and XFD1048576": (TASKS, far_cell("XFD1048576", 1048576)),
    "a dimension claiming the whole sheet": (TASKS, dimension("A1:XFD1048576")),
    "50 columns x 1,000,000 rows": (TASKS, far_cell("AX1000000", 1000000)),
    "cells without r beyond the last column": (
        TASKS, rows_before_end('<row r="7">' + BARE_CELL * 40 + "</row>")),
    "_portal: A1 and XFD1048576": (META_SHEET, far_cell("XFD1048576", 1048576)),
    "_portal: a dimension claiming the whole sheet": (META_SHEET, dimension("A1:XFD1048576")),
    "_portal: rows and cells without r beyond its last row": (
        META_SHEET, rows_before_end(f"<row>{BARE_CELL}</row>" * 250)),
}


@pytest.fixture
def env(app, factory):
    users, tasks, headers, node = import_env(factory, tasks=3)
    template = build_template(users["alice"], node, "single", "en")
    filled = single_file(template, [(t.id, {"C": "approve", "E": 10, "F": "Travel"})
                                    for t in tasks])
    return {"users": users, "tasks": tasks, "headers": headers, "node": node,
            "filled": filled}


def bound_of(app, node, sheet, mode="single"):
    return reader.sheet_bounds(node, mode, app.config["MAX_IMPORT_ROWS"]).for_sheet(sheet)


def assert_too_large(response, sheet, bound):
    assert response.status_code == 400, response.get_data(as_text=True)[:500]
    message = response.get_json()["error"]
    assert f'"{sheet}"' in message and "too large" in message, message
    assert f"rows 1 to {bound.rows}" in message, message
    assert f"columns A to {extents.column_letters(bound.columns)}" in message, message
    assert_nothing_created()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_sheet_beyond_its_bound_is_refused_through_the_api(app, client, env, case):
    sheet, edit = HOSTILE[case]
    data = edit_sheet(env["filled"], sheet, edit)
    bound = bound_of(app, env["node"], sheet)
    assert_too_large(upload(client, env["headers"], env["node"], data, dry_run=True),
                     sheet, bound)
    assert_too_large(upload(client, env["headers"], env["node"], data), sheet, bound)


@pytest.mark.parametrize("case", ["A1 and XFD1048576", "_portal: A1 and XFD1048576",
                                  "_portal: rows and cells without r beyond its last row"])
def test_a_sheet_beyond_its_bound_is_refused_on_the_import_page(app, client, env, case):
    sheet, edit = HOSTILE[case]
    bound = bound_of(app, env["node"], sheet)
    login(client, "alice")
    url = f"/nodes/{env['node'].id}/import"
    response = client.post(url, data={
        "csrf_token": csrf_token(client, url), "mode": "single",
        "file": (io.BytesIO(edit_sheet(env["filled"], sheet, edit)), "claims.xlsx")},
        content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"rows 1 to {bound.rows}" in page and "too large" in page
    assert_nothing_created()


def five_kb_corner_file():
    """No template needed: the hidden metadata sheet is read first."""
    book = openpyxl.Workbook()
    book.active.title = TASKS
    book.active["A1"] = "Task ID"
    meta = book.create_sheet(META_SHEET)
    meta["A1"], meta["XFD1048576"] = "marker", "x"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_5_kb_file_with_a_far_metadata_cell_is_refused(app, client, env):
    data = five_kb_corner_file()
    assert len(data) < 6000
    assert_too_large(upload(client, env["headers"], env["node"], data, dry_run=True),
                     META_SHEET, bound_of(app, env["node"], META_SHEET))


def test_the_metadata_sheet_is_found_under_any_part_name(app, client, env):
    """calamine matches part names without regard to case: so does the bound."""
    part = sheet_part(env["filled"], META_SHEET)
    data = edit_sheet(env["filled"], META_SHEET, far_cell("A500", 500))
    with_rels = rezip(data, rename={part: part.upper().replace(".XML", ".xml")})
    bound = bound_of(app, env["node"], META_SHEET)
    assert bound.rows < 500 < bound_of(app, env["node"], TASKS).rows
    assert_too_large(upload(client, env["headers"], env["node"], with_rels, dry_run=True),
                     META_SHEET, bound)


# --- what legitimate files hold still imports ---------------------------------------------

def test_a_filled_single_mode_template_still_imports(client, env):
    response = upload(client, env["headers"], env["node"], env["filled"], dry_run=True)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["preview"]["valid"] == 3
    response = upload(client, env["headers"], env["node"], env["filled"])
    assert response.status_code == 202 and response.get_json()["batch"]["total"] == 3


def test_a_per_instance_template_with_long_tables_still_imports(client, env):
    template = build_template(env["users"]["alice"], env["node"], "per_instance", "en")
    book = openpyxl.load_workbook(io.BytesIO(template))
    first, second = (book[str(t.id)] for t in env["tasks"][:2])
    for ws, lines in ((first, 3), (second, 900)):
        ws["B3"], ws["B5"], ws["B6"] = "approve", 10, "Travel"
        assert ws["A11"].value == "Lines" and ws["A12"].value == "Item*"
        for line in range(lines):
            ws.cell(row=13 + line, column=1, value=f"item {line}")
            ws.cell(row=13 + line, column=2, value=line)
    out = io.BytesIO()
    book.save(out)
    response = upload(client, env["headers"], env["node"], out.getvalue(), mode="per_instance",
                      dry_run=True)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["preview"] == {"valid": 2, "invalid": [], "skipped": 1}


def edge_cell(row, column):
    ref = f"{extents.column_letters(column)}{row}"
    return far_cell(ref, row)


def test_a_sheet_may_reach_its_bound_but_not_beyond(app, client, env, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_IMPORT_ROWS", 10)
    bound = bound_of(app, env["node"], TASKS)
    assert (bound.rows, bound.columns) == (1999, 26)        # 1 + 10 + 1,000 rows; Z
    at_edge = edit_sheet(env["filled"], TASKS, edge_cell(bound.rows, bound.columns))
    assert upload(client, env["headers"], env["node"], at_edge, dry_run=True).status_code == 200
    for row, column in ((bound.rows + 1, 1), (1, bound.columns + 1)):
        data = edit_sheet(env["filled"], TASKS, edge_cell(row, column))
        assert_too_large(upload(client, env["headers"], env["node"], data, dry_run=True),
                         TASKS, bound)


def test_cells_without_r_are_counted_to_the_bound_and_read_in_place(app, client, env,
                                                                     monkeypatch):
    monkeypatch.setitem(app.config, "MAX_IMPORT_ROWS", 10)
    bound = bound_of(app, env["node"], TASKS)
    template = build_template(env["users"]["alice"], env["node"], "single", "en")
    contiguous = single_file(template, [(t.id, {"B": "t", "C": "approve", "D": "ok", "E": 10,
                                                "F": "Travel"}) for t in env["tasks"]])
    no_refs = edit_sheet(contiguous, TASKS, lambda xml: re.sub(r'<c r="[A-Z]+[0-9]+"', "<c",
                                                               xml))
    with zipfile.ZipFile(io.BytesIO(no_refs)) as archive:
        assert b"<c r=" not in archive.read(sheet_part(no_refs, TASKS))
    response = upload(client, env["headers"], env["node"], no_refs, dry_run=True)
    assert response.get_json() == {"preview": {"valid": 3, "invalid": [], "skipped": 0}}
    for cells, status in ((bound.columns, 200), (bound.columns + 1, 400)):
        data = edit_sheet(no_refs, TASKS, rows_before_end(
            f'<row r="{bound.rows}">' + BARE_CELL * cells + "</row>"))
        assert upload(client, env["headers"], env["node"], data,
                      dry_run=True).status_code == status


def test_a_second_r_cannot_move_a_cell_past_the_bound(client, env):
    """calamine takes the last r of a cell; XML forbids a second one."""
    data = edit_sheet(env["filled"], TASKS, rows_before_end(
        '<row r="9"><c r="A9" t="inlineStr" r="XFD1048576"><is><t>x</t></is></c></row>'))
    response = upload(client, env["headers"], env["node"], data, dry_run=True)
    assert response.status_code == 400 and "damaged" in response.get_json()["error"]
    assert_nothing_created()


def test_a_far_reference_in_a_comment_is_not_a_cell(client, env):
    data = edit_sheet(env["filled"], TASKS, rows_before_end(
        '<!-- <row r="1048576"><c r="XFD1048576"><v>1</v></c></row> -->'))
    response = upload(client, env["headers"], env["node"], data, dry_run=True)
    assert response.status_code == 200 and response.get_json()["preview"]["valid"] == 3


def test_usual_files_pass_the_screen_without_the_exact_walk(app, env):
    """Templates, and files as Excel or LibreOffice write them, take the fast path."""
    from test_excel_compat import as_saved_by_another_program
    template = build_template(env["users"]["alice"], env["node"], "per_instance", "en")
    saved = as_saved_by_another_program(env["filled"], [t.id for t in env["tasks"]])
    for data, mode in ((env["filled"], "single"), (saved, "single"), (template, "per_instance")):
        bounds = reader.sheet_bounds(env["node"], mode, app.config["MAX_IMPORT_ROWS"])
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = extents.sheet_names_by_part(archive)
            assert names and set(names) <= {n.lower() for n in archive.namelist()}
            for name, sheet in names.items():
                screen = extents.Screen(bounds.for_sheet(sheet))
                screen.feed(archive.read(archive.getinfo(next(
                    n for n in archive.namelist() if n.lower() == name))))
                screen.close()
                assert not screen.flagged, (mode, sheet)


# --- the exact walk and the screen agree with the numbers -----------------------------------

@pytest.mark.parametrize("rows, columns", [(1, 1), (9, 26), (199, 10), (59999, 52),
                                           (199999, 702), (150, 30), (51001, 99)])
def test_the_screen_passes_no_reference_beyond_the_bound(rows, columns):
    """Exactly the references beyond a rounded bound are flagged; for any other
    bound, at least those (the exact walk decides the rest)."""
    bound = extents.Bound(rows, columns)
    rounded = bound == extents.Bound.at_least(rows, columns)
    cell_pattern = extents._screen_patterns(bound)[0]
    for row in (1, rows - 1, rows, rows + 1, rows * 10):
        for column in (1, columns - 1, columns, columns + 1, columns * 26):
            if row < 1 or column < 1:
                continue
            for ref in (f"{extents.column_letters(column)}{row}",
                        f"{extents.column_letters(column).lower()}00{row}"):
                flagged = cell_pattern.search(f'<c r="{ref}" t="n">'.encode()) is not None
                beyond = not bound.holds(row, column)
                assert flagged == beyond if rounded else flagged or not beyond, (bound, ref)


def test_bounds_round_up_to_a_first_digit_and_nines():
    assert extents.Bound.at_least(51001, 26) == extents.Bound(59999, 26)
    assert extents.Bound.at_least(101001, 30) == extents.Bound(199999, 52)
    assert extents.Bound.at_least(1014, 18) == extents.Bound(1999, 18)


def measure(xml, bound=extents.Bound(99, 99)):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("xl/worksheets/sheet1.xml", xml)
    with zipfile.ZipFile(data) as archive:
        return extents.measure(archive, archive.getinfo("xl/worksheets/sheet1.xml"), bound)


def test_the_exact_walk_places_cells_as_calamine_does():
    # (3, 1), (3, 2); then row 4: E9 explicit, the next cell at row 4, column F; cells
    # after the first sheetData are not read
    assert measure('<worksheet><sheetData><row r="3"><c/><c/></row><row><c r="E9"/><c/>'
                   '</row></sheetData><c r="XFD1"/></worksheet>') == extents.Extent(9, 6)
    # a dimension counts, wherever it stands; past the bound the walk stops
    assert measure('<worksheet><dimension ref="A1:C20"/><sheetData/></worksheet>') == \
        extents.Extent(20, 3)
    assert measure('<worksheet><sheetData><row r="500"/><row r="7000"/></sheetData>'
                   '</worksheet>') == extents.Extent(500, 0)


def test_rows_or_cells_nested_in_a_cell_are_unreadable():
    """Else the walk and calamine could disagree about where a cell ends."""
    for inner in ('<row r="1"/>', "<c/>", '<is><row r="1"/></is>'):
        with pytest.raises(extents.Unreadable):
            measure(f'<worksheet><sheetData><row r="9"><c>{inner}</c><c/></row></sheetData>'
                    "</worksheet>")


# --- the child process -------------------------------------------------------------------------

def enable_log(monkeypatch):
    """alembic's fileConfig (run by the session's migration) disables the loggers
    that existed then; these tests read the sandbox's warnings."""
    monkeypatch.setattr(sandbox.log, "disabled", False)


def limits(**changes):
    values = {"max_entries": 1000, "max_unpacked_bytes": 300 * 1024 * 1024, **changes}
    return safety.Limits(**values)


def read_in_child(data, mode="single", **changes):
    with sandbox.open_workbook(data, mode, limits(**changes), max_sheets=100) as book:
        if book.first is not None:
            list(book.first[1])
        return book


def test_calamine_alone_aborts_on_the_corner_file(tmp_path):
    """The defect, shown where it cannot hurt: a separate process reading the
    5 KB file the way the reader did dies of SIGABRT (under a 2 GB limit)."""
    path = tmp_path / "corner.xlsx"
    path.write_bytes(five_kb_corner_file())
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from python_calamine import CalamineWorkbook
        book = CalamineWorkbook.from_path({str(path)!r})
        book.get_sheet_by_name({META_SHEET!r}).to_python(skip_empty_area=False)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode < 0, result.stderr[-500:]


@pytest.mark.parametrize("ref", ["XFD1048576", "AX1000000"])
def test_a_reader_abort_costs_one_request(app, monkeypatch, caplog, ref):
    """Past the bounds (called directly here), the child dies, not this process."""
    enable_log(monkeypatch)
    book = openpyxl.Workbook()
    book.active.title = TASKS
    meta = book.create_sheet(META_SHEET)
    meta["A1"], meta[ref] = "marker", "x"
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(UnusableFile, match="could not be read"):
        read_in_child(out.getvalue())
    assert f"stopped early (exit -{signal.SIGABRT.value})" in caplog.text


def test_the_memory_limit_applies_to_every_upload(app, client, env, monkeypatch):
    monkeypatch.setitem(app.config, "EXCEL_READER_MEMORY_MB", 8)
    response = upload(client, env["headers"], env["node"], env["filled"], dry_run=True)
    assert response.status_code == 400 and "could not be read" in response.get_json()["error"]
    assert_nothing_created()


def fake_child(tmp_path, monkeypatch, body):
    """Run ``body`` (Python) as the child instead of reader_child.py."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(body))
    monkeypatch.setattr(sandbox, "CHILD", str(script))


def test_a_child_that_overruns_its_time_is_killed(app, tmp_path, monkeypatch, caplog):
    enable_log(monkeypatch)
    pid_file = tmp_path / "pid"
    fake_child(tmp_path, monkeypatch, f"""
        import os, sys, time
        sys.stdin.buffer.read()
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(300)
    """)
    with pytest.raises(UnusableFile, match="could not be read"):
        read_in_child(b"ignored", reader_seconds=1)
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "took more than 1 s" in caplog.text


def test_a_child_cannot_make_the_portal_run_code(app, tmp_path, monkeypatch, caplog):
    enable_log(monkeypatch)
    marker = tmp_path / "ran"
    fake_child(tmp_path, monkeypatch, f"""
        import os, pickle, sys
        sys.stdin.buffer.read()

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))

        payload = pickle.dumps(("book", Evil()))
        sys.stdout.buffer.write(len(payload).to_bytes(8, "big") + payload)
    """)
    with pytest.raises(UnusableFile, match="could not be read"):
        read_in_child(b"ignored")
    assert not marker.exists() and "unreadable bytes" in caplog.text


WRITER = textwrap.dedent("""
    import pickle, sys
    sys.stdin.buffer.read()
    out = sys.stdout.buffer

    def frame(value):
        payload = pickle.dumps(value)
        out.write(len(payload).to_bytes(8, "big") + payload)
""")


@pytest.mark.parametrize("writes, logged", [
    ('out.write((1 << 40).to_bytes(8, "big"))\nwhile True:\n    out.write(b"x" * 65536)',
     "announced a frame of 1099511627776 bytes"),
    ('frame(("book", ["T"], ["T"], [], (0, 0)))\n'
     'while True:\n    frame(("rows", [("x" * 999,)] * 50))',
     "wrote more than 2097152 bytes"),
])
def test_a_child_cannot_fill_the_portal_memory(app, tmp_path, monkeypatch, caplog, writes,
                                                logged):
    enable_log(monkeypatch)
    fake_child(tmp_path, monkeypatch, WRITER + writes)
    with pytest.raises(UnusableFile, match="could not be read"):
        read_in_child(b"ignored", reader_memory_mb=2)
    assert logged in caplog.text


def test_the_child_reads_the_values_calamine_gives(app, env):
    template = build_template(env["users"]["alice"], env["node"], "single", "en")
    data = single_file(template, [(env["tasks"][0].id, {"C": "approve", "E": 10.5,
                                                         "G": date(2024, 5, 1)})])
    with sandbox.open_workbook(data, "single", limits(), max_sheets=10) as book:
        assert book.names[0] == TASKS and META_SHEET in book.names
        assert dict(row[:2] for row in book.meta)["marker"] == "portal-workbook"
        start, rows = book.first
        rows = list(rows)
    assert start == (0, 0) and len(rows) == 2
    assert rows[1][:7] == (env["tasks"][0].id, "", "approve", "", 10.5, "", date(2024, 5, 1))


def test_the_child_imports_nothing_of_the_portal():
    """It starts fast and holds nothing of the portal (no config, no secrets)."""
    probe = ("import sys; sys.path.insert(0, %r); import reader_child; "
             "print(sorted(m for m in sys.modules if m.startswith(('portal', 'flask'))))"
             % os.path.dirname(sandbox.CHILD))
    result = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
