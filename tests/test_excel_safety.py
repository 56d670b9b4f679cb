"""Hostile or broken uploads get a clear 4xx and create nothing."""
import copy
import io
import zipfile

import openpyxl
import pytest

from support import EXPENSE
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Node, ProcessDefinition
from portal.models.uploads import PendingUpload

BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                  b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol3;</t></is></c>'
                  b'</row></sheetData></worksheet>')
EXTERNAL_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                   b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                   b'count="1" uniqueCount="1"><si><t>&xxe;</t></si></sst>')


def _node(key="manager", version=1):
    return db.session.execute(
        db.select(Node).join(ProcessDefinition).where(
            ProcessDefinition.key == "expense", Node.key == key,
            ProcessDefinition.version == version)).scalar_one()


def rezip(data, replace=None, add=None, drop=()):
    """A copy of the zip ``data`` with parts replaced, added or dropped."""
    replace, add = replace or {}, add or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename in drop:
                continue
            target.writestr(info.filename, replace.get(info.filename, source.read(info)))
        for name, content in add.items():
            target.writestr(name, content)
    return out.getvalue()


def filled_single(data, rows):
    """The template with ``rows`` ({row number: [values from column C]}) filled in."""
    book = openpyxl.load_workbook(io.BytesIO(data))
    ws = book.worksheets[0]
    for row, values in rows.items():
        for offset, value in enumerate(values):
            ws.cell(row=row, column=3 + offset, value=value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.fixture
def env(factory):
    users = factory.standard(tasks=3)
    node = _node()
    template = build_template(users["alice"], node, "single", "en")
    good = filled_single(template, {2: ["approve", "", 10, "Travel"]})
    token = factory.token(users["alice"])
    return {"users": users, "node": node, "template": template, "good": good,
            "headers": {"Authorization": f"Bearer {token}"}}


def post(client, env, data, mode="single", node=None, dry_run=False, filename="claims.xlsx"):
    form = {"file": (io.BytesIO(data), filename), "node_id": str((node or env["node"]).id),
            "mode": mode}
    if dry_run:
        form["dry_run"] = "1"
    return client.post("/api/v1/imports", data=form, headers=env["headers"],
                       content_type="multipart/form-data")


def assert_refused(response, status=400, words=()):
    assert response.status_code == status, response.get_data(as_text=True)
    message = response.get_json()["error"]
    for word in words:
        assert word.lower() in message.lower(), message
    assert db.session.execute(db.select(db.func.count(Batch.id))).scalar() == 0
    assert db.session.execute(db.select(db.func.count(BatchItem.id))).scalar() == 0
    assert db.session.execute(db.select(db.func.count(PendingUpload.id))).scalar() == 0


def test_a_good_file_is_accepted(client, env):
    """The control case: the same helpers make a file the portal takes."""
    response = post(client, env, env["good"], dry_run=True)
    assert response.status_code == 200
    assert response.get_json()["preview"]["valid"] == 1


@pytest.mark.parametrize("data, words", [
    (b"", ["empty"]),
    (b"just some text, not a workbook", [".xlsx", "CSV"]),
    (b"task_id,action,comment\n1,approve,ok\n", [".xlsx", "CSV"]),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 2000, [".xls"]),
])
def test_files_that_are_not_xlsx(client, env, data, words):
    assert_refused(post(client, env, data), words=words)
    assert_refused(post(client, env, data, dry_run=True), words=words)


def test_truncated_file(client, env):
    assert_refused(post(client, env, env["good"][: len(env["good"]) // 2]),
                   words=["damaged"])
    assert_refused(post(client, env, env["good"][:-30]), words=["damaged"])


def test_corrupted_part_fails_its_crc(client, env):
    with zipfile.ZipFile(io.BytesIO(env["good"])) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 40
    data = bytearray(env["good"])
    data[offset] ^= 0xFF
    assert_refused(post(client, env, bytes(data)), words=["damaged"])


def test_workbook_with_macros(client, env):
    with_vba = rezip(env["good"], add={"xl/vbaProject.bin": b"\0" * 100})
    assert_refused(post(client, env, with_vba), words=["macros"])
    with zipfile.ZipFile(io.BytesIO(env["good"])) as archive:
        types = archive.read("[Content_Types].xml")
    macro_types = types.replace(b"spreadsheetml.sheet.main+xml",
                                b"PLACEHOLDER").replace(
        b"application/vnd.openxmlformats-officedocument.PLACEHOLDER",
        b"application/vnd.ms-excel.sheet.macroEnabled.main+xml")
    assert macro_types != types
    assert_refused(post(client, env, rezip(env["good"], replace={
        "[Content_Types].xml": macro_types})), words=["macros"])


def test_other_zip_formats(client, env):
    odt_like = rezip(env["good"], drop={"[Content_Types].xml"}, add={"mimetype": b"x"})
    assert_refused(post(client, env, odt_like), words=[".xlsx"])


def test_zip_bomb_by_compression_ratio(client, env):
    bomb = rezip(env["good"], add={"xl/media/image1.png": b"\0" * (20 * 1024 * 1024)})
    assert_refused(post(client, env, bomb), words=["zip bomb"])


def test_zip_bomb_by_total_size(client, env, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_IMPORT_UNPACKED_MB", 1)
    big = rezip(env["good"], add={"xl/media/image1.png": bytes(range(256)) * 8192})  # 2 MB
    assert_refused(post(client, env, big), words=["1 MB"])


def test_zip_bomb_by_entry_count(client, env, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_IMPORT_ROWS", 5)       # 2 * 5 + 100 parts at most
    many = rezip(env["good"], add={f"xl/media/image{i}.png": b"x" for i in range(120)})
    assert_refused(post(client, env, many), words=["too many parts"])


@pytest.mark.parametrize("part, content", [
    ("xl/worksheets/sheet1.xml", BILLION_LAUGHS),
    ("xl/worksheets/sheet1.xml", EXTERNAL_ENTITY),
    ("xl/styles.xml", b'<?xml version="1.0"?><!DOCTYPE styleSheet SYSTEM "http://x/y.dtd">'
                      b'<styleSheet/>'),
])
def test_xml_with_a_dtd_is_refused(client, env, part, content):
    assert_refused(post(client, env, rezip(env["good"], replace={part: content})),
                   words=["DTD"])


def test_dtd_in_a_part_with_an_unusual_name(client, env):
    hidden = rezip(env["good"], add={"xl/printerSettings/settings.bin": BILLION_LAUGHS})
    assert_refused(post(client, env, hidden), words=["DTD"])


def test_too_many_rows(client, env, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_IMPORT_ROWS", 2)
    data = filled_single(env["template"], {2: ["approve"], 3: ["approve"], 4: ["approve"]})
    assert_refused(post(client, env, data), words=["more than 2 rows"])
    assert_refused(post(client, env, data, dry_run=True), words=["more than 2 rows"])


def test_too_many_sheets(client, env, app, monkeypatch):
    per_instance = build_template(env["users"]["alice"], env["node"], "per_instance", "en")
    monkeypatch.setitem(app.config, "MAX_IMPORT_ROWS", 2)          # the template has 3 sheets
    assert_refused(post(client, env, per_instance, mode="per_instance"),
                   words=["more than 2 task sheets"])


def test_upload_over_max_upload_mb_is_413(client, env, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2000)
    monkeypatch.setitem(app.config, "MAX_UPLOAD_MB", 1)
    assert len(env["good"]) > 2000
    assert_refused(post(client, env, env["good"]), status=413, words=["larger than 1 MB"])


def test_template_of_another_mode(client, env):
    assert_refused(post(client, env, env["good"], mode="per_instance"),
                   words=["one row per task"])


def test_template_of_another_node(client, env, factory):
    other = copy.deepcopy(EXPENSE)
    other["key"] = "travel"
    factory.process(other)
    travel_node = db.session.execute(db.select(Node).join(ProcessDefinition).where(
        ProcessDefinition.key == "travel", Node.key == "manager")).scalar_one()
    assert_refused(post(client, env, env["good"], node=travel_node), words=["another node"])
    finance = _node("finance")
    assert_refused(post(client, env, env["good"], node=finance), words=["another node"])


def test_template_of_another_version(client, env, factory):
    changed = copy.deepcopy(EXPENSE)
    changed["nodes"][0]["fields"][4]["max_length"] = 300
    factory.process(changed)
    assert_refused(post(client, env, env["good"], node=_node(version=2)),
                   words=["version 1", "version 2"])


def test_workbook_that_is_not_a_template(client, env):
    book = openpyxl.Workbook()
    book.active.append(["Task ID", "Title", "Action"])
    out = io.BytesIO()
    book.save(out)
    assert_refused(post(client, env, out.getvalue()), words=["not made from a portal template"])


def test_template_with_a_moved_column(client, env):
    book = openpyxl.load_workbook(io.BytesIO(env["good"]))
    book.worksheets[0].delete_cols(5)               # Amount removed: Category shifts left
    out = io.BytesIO()
    book.save(out)
    assert_refused(post(client, env, out.getvalue()), words=["Amount"])


def test_missing_file_or_bad_parameters(client, env):
    response = client.post("/api/v1/imports", data={"node_id": str(env["node"].id),
                                                     "mode": "single"},
                           headers=env["headers"], content_type="multipart/form-data")
    assert_refused(response, words=["file"])
    assert_refused(post(client, env, env["good"], mode="sideways"), words=["mode"])
    response = client.post("/api/v1/imports", data={
        "file": (io.BytesIO(env["good"]), "a.xlsx"), "node_id": "abc", "mode": "single"},
        headers=env["headers"], content_type="multipart/form-data")
    assert_refused(response, words=["node_id"])
