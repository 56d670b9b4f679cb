"""Writing portal workbooks with openpyxl's streaming (write-only) mode.

Every string is written as a string cell (``data_type = "s"``): openpyxl would
otherwise store text that starts with ``=`` as a live formula, and a value
typed by a user must never become one. Validations cover whole column ranges
(one object per column), which costs nothing however many rows follow.
"""
import io
import re
from dataclasses import dataclass, field as dataclass_field

from flask_babel import gettext as _
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

from portal.excel import layout
from portal.excel.meta import LISTS_SHEET, META_SHEET, meta_rows
from portal.workflow.engine import MAX_COMMENT

# Characters XML 1.0 cannot hold; tab, LF and CR are allowed and kept.
ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
DATE_FORMAT = "yyyy-mm-dd"

REQUIRED_FILL = PatternFill("solid", fgColor="FCE4D6")
READ_ONLY_FILL = PatternFill("solid", fgColor="D9D9D9")
OPTIONAL_FILL = PatternFill("solid", fgColor="DDEBF7")
ERROR_FILL = PatternFill("solid", fgColor="FFC7CE")
BOLD = Font(bold=True)
ERROR_FONT = Font(color="9C0006")


@dataclass
class TaskValues:
    """What one task's row or sheet shows: values by slot key, table lines by
    table key, and for error workbooks the message and the faulty keys."""
    values: dict
    tables: dict = dataclass_field(default_factory=dict)
    error: str | None = None
    faulty: frozenset = frozenset()


def new_workbook():
    return Workbook(write_only=True)


def save(workbook):
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def cell(ws, value, *, fill=None, font=None, number_format=None):
    """A cell whose text can never turn into a formula."""
    if isinstance(value, str):
        value = ILLEGAL_XML.sub("", value)
    result = WriteOnlyCell(ws, value=value)
    if isinstance(value, str):
        result.data_type = "s"
    if fill is not None:
        result.fill = fill
    if font is not None:
        result.font = font
    if number_format is not None:
        result.number_format = number_format
    return result


def header_fill(slot):
    if slot.read_only:
        return READ_ONLY_FILL
    return REQUIRED_FILL if slot.required else OPTIONAL_FILL


class Dropdowns:
    """Dropdown choices kept in a hidden sheet, one column per distinct list,
    so options may hold commas and be any length."""

    def __init__(self):
        self.columns = {}

    def formula(self, choices):
        choices = tuple(str(c) for c in choices)
        if choices not in self.columns:
            self.columns[choices] = get_column_letter(len(self.columns) + 1)
        letter = self.columns[choices]
        return f"{quote_sheetname(LISTS_SHEET)}!${letter}$1:${letter}${max(1, len(choices))}"

    def write_sheet(self, workbook):
        ws = workbook.create_sheet(LISTS_SHEET)
        ws.sheet_state = "veryHidden"
        lists = list(self.columns)
        for index in range(max((len(c) for c in lists), default=0)):
            ws.append([cell(ws, c[index]) if index < len(c) else None for c in lists])


class Validations:
    """The data validation rule of each slot, worked out once per workbook and
    stamped onto any number of cell ranges."""

    def __init__(self, dropdowns, locale):
        self.dropdowns, self.locale, self.rules = dropdowns, locale, {}

    def add(self, ws, slot, sqref):
        if slot.read_only:
            return
        if slot.key not in self.rules:
            self.rules[slot.key] = rule_options(slot, self.dropdowns, self.locale)
        options = self.rules[slot.key]
        if options is not None:
            rule = DataValidation(allow_blank=True, showErrorMessage=True, **options)
            rule.add(sqref)
            ws.data_validations.append(rule)


EXCEL_MESSAGE_MAX = 225      # Excel calls a file with a longer validation message damaged
EXCEL_NUMBER_MAX = "9.99E+307"


def _rule(kind, message, **options):
    return dict(type=kind, errorTitle=_("Invalid value")[:32],
                error=message[:EXCEL_MESSAGE_MAX], **options)


def rule_options(slot, dropdowns, locale):
    """The data validation of one slot, or None when Excel has nothing to check."""
    kind, spec = slot.kind, slot.field or {}
    lang = layout.language(locale)
    if kind in ("action", "select", "boolean"):
        choices = {"action": layout.ACTION_LABELS[lang], "boolean": layout.BOOLEAN_LABELS[lang]
                   }.get(kind) or spec.get("options", [])
        return _rule("list", _("Choose one of: %(options)s.", options=", ".join(
            map(str, choices))), formula1=dropdowns.formula(choices))
    if kind == "number":
        low, high = spec.get("min"), spec.get("max")
        return _rule("decimal", _("Enter a number."), operator="between",
                     formula1=str(low) if low is not None else "-" + EXCEL_NUMBER_MAX,
                     formula2=str(high) if high is not None else EXCEL_NUMBER_MAX)
    if kind == "date":
        return _rule("date", _("Enter a date as YYYY-MM-DD."),
                     operator="greaterThanOrEqual", formula1="1")
    limit = MAX_COMMENT if kind == "comment" else spec.get("max_length")
    if kind in ("comment", "text") and limit:
        return _rule("textLength", _("At most %(n)s characters.", n=limit),
                     operator="lessThanOrEqual", formula1=str(limit))
    return None


def value_cell(ws, slot, value, faulty):
    """The cell of one value; None (nothing written) for an empty, unremarkable one."""
    if value is None and not faulty:
        return None
    fill = ERROR_FILL if faulty else (READ_ONLY_FILL if slot.read_only else None)
    number_format = DATE_FORMAT if slot.kind == "date" else None
    return cell(ws, value, fill=fill, number_format=number_format)


# --- single mode --------------------------------------------------------------------

def write_single_sheet(workbook, title, slots, rows, *, validations, with_errors):
    """One header row, then one row per task; ``rows`` yields TaskValues."""
    ws = workbook.create_sheet(title)
    for index, slot in enumerate(slots, start=1):
        letter = get_column_letter(index)
        ws.column_dimensions[letter].width = 40 if slot.key in ("title", "comment") else 16
        if slot.kind == "date":
            ws.column_dimensions[letter].number_format = DATE_FORMAT
        validations.add(ws, slot,
                        f"{letter}{layout.DATA_START_ROW}:{letter}{layout.EXCEL_MAX_ROW}")
    if with_errors:
        ws.column_dimensions[get_column_letter(len(slots) + 1)].width = 60
    ws.freeze_panes = "C2"
    ws.append(_single_header(ws, slots, with_errors))
    for row in rows:
        cells = [value_cell(ws, slot, row.values.get(slot.key), slot.key in row.faulty)
                 for slot in slots]
        if with_errors:
            cells.append(cell(ws, row.error or "", fill=ERROR_FILL, font=ERROR_FONT))
        ws.append(cells)
    return ws


def _single_header(ws, slots, with_errors):
    header = []
    for slot in slots:
        head = cell(ws, slot.label, fill=header_fill(slot), font=BOLD)
        if slot.key == "task_id":
            head.comment = Comment(_("Identifies the task: keep it as it is. Delete the whole row "
                                     "to leave a task out."), "portal")
        elif slot.read_only:
            head.comment = Comment(_("Not read: shown for your reference."), "portal")
        header.append(head)
    if with_errors:
        header.append(cell(ws, layout.ERROR_HEADER, fill=ERROR_FILL, font=BOLD))
    return header


# --- per-instance mode ----------------------------------------------------------------

def write_task_sheet(workbook, slots, tables, task, *, validations, with_errors):
    """One sheet per task: labels in A, values in B, then one section per table."""
    ws = workbook.create_sheet(str(task.values["task_id"]))
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 40
    for row_number, slot in enumerate(slots, start=1):
        validations.add(ws, slot, f"B{row_number}")
    for slot in slots:
        ws.append([cell(ws, slot.label, fill=header_fill(slot), font=BOLD),
                   value_cell(ws, slot, task.values.get(slot.key), slot.key in task.faulty)])
    for table in tables:
        _write_table(ws, table, task.tables.get(table["key"]) or [], table["key"] in task.faulty)
    if with_errors:
        ws.append([])
        ws.append([cell(ws, layout.ERROR_HEADER, fill=ERROR_FILL, font=BOLD),
                   cell(ws, task.error or "", fill=ERROR_FILL, font=ERROR_FONT)])
    ws.close()  # written to its temporary file now: one open file at a time
    return ws


def _write_table(ws, table, lines, faulty):
    columns = layout.table_column_slots(table)
    label = layout.mark_required(table.get("label", table["key"]), bool(table.get("required")))
    ws.append([])
    ws.append([cell(ws, label, font=BOLD, fill=ERROR_FILL if faulty else OPTIONAL_FILL)])
    ws.append([cell(ws, c.label, fill=header_fill(c), font=BOLD) for c in columns])
    for line in lines:
        line = line if isinstance(line, dict) else {}
        ws.append([value_cell(ws, c, line.get(c.key), False) for c in columns])


# --- the portal's own sheets ---------------------------------------------------------

def write_instructions(workbook, title, lines):
    ws = workbook.create_sheet(title)
    ws.column_dimensions["A"].width = 120
    for index, line in enumerate(lines):
        ws.append([cell(ws, line, font=BOLD if index == 0 else None)])
    return ws


def write_meta(workbook, meta):
    ws = workbook.create_sheet(META_SHEET)
    ws.sheet_state = "veryHidden"
    for key, value in meta_rows(meta):
        ws.append([cell(ws, key), cell(ws, value)])
    return ws
