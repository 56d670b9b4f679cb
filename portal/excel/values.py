"""Stored values as a workbook's cells show them, so that reading a cell back gives the value.

Templates are prefilled with each task's own values and error workbooks with what
each item was decided with: a cell left as it is must read back as the same value
(``reader`` and ``portal.workflow.forms`` undo these encodings). Dates become date
cells, yes/no the dropdown's words; a value no cell holds as it is (a list or an
object in a one-value field) is left empty, which keeps the task's own value.
"""
from datetime import date

from portal.excel import layout


def display_value(field, value, locale):
    """A stored value as the template shows it (dates as dates, yes/no as words)."""
    kind = field.get("type", "text")
    if kind == "boolean" and isinstance(value, bool):
        return layout.boolean_label(value, locale)
    if kind == "date" and isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, (list, dict)):
        return None
    return value


def table_lines(table, lines, locale):
    """A table field's stored lines as the rows of its section."""
    if not isinstance(lines, list):
        return []
    columns = table.get("columns", [])
    return [{c["key"]: display_value(c, line.get(c["key"]), locale) for c in columns}
            if isinstance(line, dict) else {} for line in lines]


def form_cells(node, form, locale):
    """(values by slot key, lines by table key) of a form's stored values for ``node``."""
    form = form if isinstance(form, dict) else {}
    values = {f["key"]: display_value(f, form.get(f["key"]), locale) for f in node.form_fields}
    tables = {t["key"]: table_lines(t, form.get(t["key"]), locale)
              for t in layout.table_fields(node)}
    return values, tables
