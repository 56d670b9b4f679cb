"""A node's template, prefilled with the caller's pending tasks at that node and each
task's own values (its instance's variables for the node's fields, tables too), written
as the reader reads them back: a file uploaded as it was downloaded changes nothing.

A single-mode template lists at most MAX_IMPORT_ROWS tasks (what one upload may
hold); a per-instance one at most MAX_TEMPLATE_SHEETS (default 1,000): a
workbook of thousands of sheets is slow to make and to use. The instructions
sheet says when tasks were left out.
"""
import re
from datetime import date

from flask import current_app
from flask_babel import gettext as _

from portal.excel.compose import build_workbook
from portal.excel.layout import MODES
from portal.excel.values import form_cells
from portal.excel.writer import TaskValues
from portal.infra.extensions import db
from portal.models import Instance, Task
from portal.workflow.forms import own_values
from portal.workflow.visibility import pending_tasks_query

TEMPLATE_SHEETS = 1000


def template_limit(mode):
    config = current_app.config
    if mode == "single":
        return config["MAX_IMPORT_ROWS"]
    return min(config.get("MAX_TEMPLATE_SHEETS") or TEMPLATE_SHEETS, config["MAX_IMPORT_ROWS"])


def pending_rows(user, node, limit):
    """(task id, title, instance variables) of the caller's pending tasks at ``node``, oldest
    first."""
    query = (pending_tasks_query(user, node_id=node.id)
             .with_only_columns(Task.id, Instance.title, Instance.data).order_by(Task.id)
             .limit(limit))
    return db.session.execute(query).all()


def _task_values(node, task_id, title, data, locale):
    """What a task's row or sheet shows: its id and title, and its own values (the action and
    comment are the user's to fill in)."""
    values, tables = form_cells(node, own_values(node.fields, data), locale)
    return TaskValues({"task_id": task_id, "title": title, **values}, tables)


def pending_count(user, node):
    query = pending_tasks_query(user, node_id=node.id).with_only_columns(db.func.count(Task.id))
    return db.session.execute(query).scalar()


def build_template(user, node, mode, locale):
    """The .xlsx bytes of ``node``'s template in ``mode`` for ``user``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    limit = template_limit(mode)
    rows = pending_rows(user, node, limit)
    notes = []
    if len(rows) == limit:
        pending = pending_count(user, node)
        if pending > limit:
            notes.append(lambda: _(
                "This file lists %(listed)s of your %(pending)s pending tasks at this node, the "
                "oldest first. Download the template again after importing them for the rest.",
                listed=limit, pending=pending))
    tasks = (_task_values(node, task_id, title, data, locale) for task_id, title, data in rows)
    return build_workbook(node, mode, tasks, locale=locale, notes=notes)


_UNSAFE_IN_NAME = re.compile(r"[^\w.-]+")


def template_filename(node, mode, today=None):
    """``<process>-<node>-<mode>-<date>.xlsx`` from the keys an admin loaded (BPMN ids), with anything
    but letters, digits, ``.``, ``-`` and ``_`` replaced; never from what the downloading user sent.
    Non-ASCII keys reach the browser through ``filename*`` (UTF-8), which Flask's send_file writes."""
    def part(text):
        return _UNSAFE_IN_NAME.sub("_", text).strip("._")[:60] or "x"
    today = today or date.today()
    return f"{part(node.process.key)}-{part(node.key)}-{mode}-{today:%Y%m%d}.xlsx"
