"""Helpers for the Excel tests: find a node, fill a template, upload a file."""
import io

import openpyxl

from portal.infra.extensions import db
from portal.models import Node, Task


def node_by_key(key="manager"):
    return db.session.execute(db.select(Node).where(Node.key == key)).scalar_one()


def save(book):
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _assign(ws, ref, value):
    ws[ref] = value


def single_file(template, rows, set_cell=_assign):
    """``rows``: [(task id, {column letter: value})] written from row 2 on."""
    book = openpyxl.load_workbook(io.BytesIO(template))
    ws = book.worksheets[0]
    ws.delete_rows(2, ws.max_row)
    for number, (task_id, values) in enumerate(rows, start=2):
        ws.cell(row=number, column=1, value=task_id)
        for letter, value in values.items():
            set_cell(ws, f"{letter}{number}", value)
    return save(book)


def upload(client, headers, node, data, mode="single", dry_run=False):
    """POST /api/v1/imports with ``data`` as the file."""
    form = {"file": (io.BytesIO(data), "f.xlsx"), "node_id": str(node.id), "mode": mode}
    if dry_run:
        form["dry_run"] = "1"
    return client.post("/api/v1/imports", headers=headers, content_type="multipart/form-data",
                       data=form)


def import_env(factory, tasks=4):
    """(users, their tasks in id order, alice's API headers, the manager node)."""
    users = factory.standard(tasks=tasks)
    rows = db.session.execute(db.select(Task).order_by(Task.id)).scalars().all()
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}"}
    return users, rows, headers, node_by_key()


# --- hand-edited workbooks (hostile or unusual files) -------------------------------------

def rezip(data, replace=None, rename=None):
    """A copy of the zip ``data`` with parts replaced ({name: bytes}) or renamed
    ({old name: new name})."""
    import zipfile
    replace, rename = replace or {}, rename or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = replace.get(info.filename, source.read(info))
            target.writestr(rename.get(info.filename, info.filename), content)
    return out.getvalue()


def sheet_part(data, sheet):
    """The zip part holding the sheet named ``sheet`` (through the workbook's relationships)."""
    import re
    import zipfile
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        workbook = archive.read("xl/workbook.xml").decode()
        rels = archive.read("xl/_rels/workbook.xml.rels").decode()
    tag = next(t for t in re.findall(r"<sheet\b[^>]*>", workbook) if f'name="{sheet}"' in t)
    rid = re.search(r'r:id="([^"]+)"', tag).group(1)
    rel = next(t for t in re.findall(r"<Relationship\b[^>]*>", rels) if f'Id="{rid}"' in t)
    target = re.search(r'Target="([^"]+)"', rel).group(1)
    return target.lstrip("/") if target.startswith("/") else "xl/" + target


def edit_sheet(data, sheet, edit):
    """A copy of ``data`` whose sheet ``sheet`` has the XML ``edit(xml text)``."""
    import zipfile
    name = sheet_part(data, sheet)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        xml = archive.read(name).decode()
    return rezip(data, replace={name: edit(xml).encode()})
