"""Helpers for the Excel tests: find a node, fill a template, upload a file."""
import io

import openpyxl

from portal.extensions import db
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
