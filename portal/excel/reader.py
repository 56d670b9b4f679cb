"""Reading an uploaded workbook into entries: one per row (single mode) or per
sheet (per-instance mode), each with its task id, raw decision and any problem
found while reading. Nothing here validates a form or looks at tasks: that is
``portal.batches.imports``.

The file is checked by ``safety`` first, each sheet against the bound of what
the portal writes there (``sheet_bounds``), then read with python-calamine in
a child process (``sandbox``), which reads shared and inline strings alike and
gives formula cells their cached value. Positions follow contract
(docs/contract.md) section 6; headers are only compared to catch moved or
deleted columns.
"""
from dataclasses import dataclass, field as dataclass_field

from flask_babel import force_locale

from portal.excel import UnusableFile, cells, layout, meta as metadata, safety, sandbox
from portal.excel.extents import Bound, SheetBounds
from portal.excel.meta import LISTS_SHEET, META_SHEET, check_meta, not_a_template, parse_meta
# ``_`` makes Messages: an entry's errors may be stored on its batch item and read later in
# another language (``portal.messages``); a field named in one is a ``field`` reference.
from portal.messages import field, message as _

# How far a sheet may reach beyond what the portal wrote there: blank rows
# between tasks and a few lines or columns of the user's own notes.
ROW_SLACK = 1000
COLUMN_SLACK = 16
# Lines of all the tables of one per-instance sheet together.
TABLE_LINES = 1000
LIST_SLACK = 10


@dataclass
class Entry:
    """One task's decision as written in the file (values not yet validated)."""
    kind: str                    # "row" or "sheet"
    where: object                # row number (1-based) or sheet name
    task_id: int | None = None
    action: object = None
    comment: object = None
    form: dict = dataclass_field(default_factory=dict)
    errors: dict = dataclass_field(default_factory=dict)

    @property
    def source_ref(self):
        return f"{self.kind} {self.where}"


@dataclass
class Upload:
    meta: object
    entries: list
    skipped: int                 # rows or sheets that name a task but hold nothing else


def read_upload(data, node, mode, *, max_rows, limits):
    """Entries of an upload for ``node`` in ``mode``; UnusableFile when it cannot be used."""
    safety.check_upload(data, limits, bounds=sheet_bounds(node, mode, max_rows))
    with sandbox.open_workbook(data, mode, limits, max_sheets=max_rows) as book:
        meta = _read_meta(book)
        check_meta(meta, node, mode)
        if mode == "single":
            entries, skipped = _single_entries(_first_sheet(book, meta), node, max_rows)
        else:
            entries, skipped = _sheet_entries(book, meta, node, max_rows)
    return Upload(meta, entries, skipped)


def sheet_bounds(node, mode, max_rows):
    """How far each sheet of an upload for ``node`` in ``mode`` may reach.

    Single mode: a header row, ``max_rows`` tasks and ROW_SLACK; one column
    per slot, the error workbook's Error column and COLUMN_SLACK. Per-instance
    mode: one row per slot, each table's blank, label and header rows,
    TABLE_LINES lines, the Error row after a blank one; columns A and B or the
    widest table, and COLUMN_SLACK. Every other sheet (instructions, sheets a
    user added) gets the same bound as the mode's task sheets. Each bound is
    rounded up by ``Bound.at_least``.
    """
    slots, tables = layout.node_slots(node), layout.table_fields(node)
    if mode == "single":
        tasks = Bound.at_least(layout.DATA_START_ROW - 1 + max_rows + ROW_SLACK,
                               len(slots) + 1 + COLUMN_SLACK)
    else:
        widest = max([2] + [len(t.get("columns", [])) for t in tables])
        tasks = Bound.at_least(len(slots) + 3 * len(tables) + 2 + TABLE_LINES,
                               widest + COLUMN_SLACK)
    return SheetBounds({META_SHEET: metadata.BOUND, LISTS_SHEET: _lists_bound(node)}, tasks)


def _lists_bound(node):
    """The dropdown lists sheet: a column per list (actions, yes/no, each select)."""
    fields = list(node.fields)
    fields += [c for t in layout.table_fields(node) for c in t.get("columns", [])]
    options = [len(f.get("options", [])) for f in fields if f.get("type") == "select"]
    return Bound.at_least(max([2] + options) + LIST_SLACK, 2 + len(options) + LIST_SLACK)


def _read_meta(book):
    if book.meta is None:
        raise not_a_template()
    return parse_meta(book.meta)


def _own_sheets(meta):
    return {META_SHEET, LISTS_SHEET, *meta.own_sheets}


def _first_sheet(book, meta):
    if book.names[0] in _own_sheets(meta) or book.first is None:
        raise UnusableFile(_("The first sheet must be the sheet of tasks. Do not move or delete "
                             "sheets."))
    return book.first


def _pad(row, width):
    return list(row) + [""] * (width - len(row)) if len(row) < width else list(row)


def _label_key(text):
    return layout.strip_mark(text).casefold()


def _fixed_labels():
    """Every language's header of each fixed slot, for comparisons."""
    labels = {}
    for locale in ("en", "zh_CN"):
        with force_locale(locale):
            for slot in layout.fixed_slots():
                labels.setdefault(slot.key, set()).add(_label_key(slot.label))
    return labels


def _expected(slot, fixed):
    return fixed[slot.key] if slot.field is None else {_label_key(slot.label)}


def _task_id(value, errors):
    if cells.is_blank(value):
        errors["task_id"] = _("The task id is missing.")
        return None
    task_id = cells.whole_number(value)
    if task_id is None or task_id <= 0:
        errors["task_id"] = _("The task id must be a whole number.")
        return None
    return task_id


def _decision(entry, slots, values):
    """Fill the entry's action, comment and form from values by slot key; True
    when nothing but the read-only cells holds anything."""
    entry.action = layout.parse_action(cells.plain(values.get("action")))
    entry.comment = cells.text_value(values.get("comment"))
    for slot in slots:
        if slot.field is not None:
            entry.form[slot.key] = cells.field_value(slot.kind, values.get(slot.key))
    editable = [entry.action, entry.comment, *entry.form.values()]
    return all(v is None or v == [] for v in editable)


# --- single mode ---------------------------------------------------------------------

def _check_header(header, slots):
    fixed = _fixed_labels()
    for index, slot in enumerate(slots):
        if _label_key(header[index]) not in _expected(slot, fixed):
            raise UnusableFile(_(
                "Column %(column)s should be headed \"%(expected)s\", not \"%(found)s\". Do not "
                "add, move or delete columns; download a new template if needed.",
                column=index + 1, expected=layout.strip_mark(slot.label),
                found=layout.strip_mark(header[index])))


def _single_entries(sheet, node, max_rows):
    slots = layout.node_slots(node)
    width = len(slots)
    start, rows = sheet
    offset = start[1]                     # calamine drops leading empty columns
    entries, skipped, counted = [], 0, 0
    rows = iter(rows)
    header = _pad([""] * offset + list(next(rows, [])), width)
    _check_header(header, slots)
    for row_number, raw in enumerate(rows, start=layout.DATA_START_ROW):
        row = _pad([""] * offset + list(raw), width)[:width]
        if all(cells.is_blank(v) for v in row):
            continue
        counted += 1
        if counted > max_rows:
            raise too_many(max_rows, "rows")
        values = {slot.key: value for slot, value in zip(slots, row)}
        entry = Entry("row", row_number)
        entry.task_id = _task_id(values["task_id"], entry.errors)
        if _decision(entry, slots, values) and entry.task_id is not None:
            skipped += 1
            continue
        entries.append(entry)
    return entries, skipped


def too_many(limit, what):
    if what == "rows":
        return UnusableFile(_("The file holds more than %(n)s rows of tasks. Split it into "
                              "several files.", n=limit))
    return UnusableFile(_("The file holds more than %(n)s task sheets. Split it into several "
                          "files.", n=limit))


# --- per-instance mode ---------------------------------------------------------------

def _task_sheet_names(book, meta):
    own = _own_sheets(meta)
    return [name for name in book.visible if name not in own]


def _sheet_entries(book, meta, node, max_rows):
    names = _task_sheet_names(book, meta)
    if len(names) > max_rows:
        raise too_many(max_rows, "sheets")
    slots, tables, fixed = layout.node_slots(node), layout.table_fields(node), _fixed_labels()
    entries, skipped = [], 0
    sheets = iter(book.sheets)
    for name in names:
        read_name, rows = next(sheets, (None, None))
        if read_name != name:
            raise safety.damaged()
        entry, blank = _sheet_entry(name, [_pad(r, 2) for r in rows], slots, tables, fixed)
        if blank:
            skipped += 1
        else:
            entries.append(entry)
    return entries, skipped


def _sheet_entry(name, rows, slots, tables, fixed):
    entry = Entry("sheet", name)

    def value(row, column):
        return rows[row][column] if row < len(rows) else ""

    for index, slot in enumerate(slots):
        if _label_key(value(index, 0)) not in _expected(slot, fixed):
            entry.errors["sheet"] = _(
                "Row %(row)s should be labelled \"%(expected)s\". Do not add, move or delete "
                "rows above the tables.", row=index + 1,
                expected=field(slot.key, layout.strip_mark(slot.label)))
            break
    values = {slot.key: value(index, 1) for index, slot in enumerate(slots)}
    entry.task_id = _task_id(values["task_id"] if not cells.is_blank(values["task_id"])
                             else name, entry.errors)
    named = cells.whole_number(name)
    if entry.task_id is not None and named is not None and named != entry.task_id:
        entry.errors["task_id"] = _("The sheet is named %(name)s but holds task %(id)s.",
                                    name=name, id=entry.task_id)
    blank = _decision(entry, slots, values)
    if not entry.errors:
        section_rows = rows[len(slots):]
        entry.form.update(_tables(section_rows, tables, entry.errors, first_row=len(slots) + 1))
        blank = blank and all(entry.form.get(t["key"]) is None for t in tables)
    return entry, blank and entry.task_id is not None and not entry.errors


def _sections(rows, first_row):
    """(row number, rows) of each block of non-blank rows."""
    block, start = [], None
    for number, row in enumerate(rows, start=first_row):
        if all(cells.is_blank(v) for v in row):
            if block:
                yield start, block
            block, start = [], None
        else:
            block.append(row)
            start = start or number
    if block:
        yield start, block


def _tables(rows, tables, errors, *, first_row):
    """{table key: [line dicts] or None} read from the sections after the fields."""
    by_label = {_label_key(t.get("label", t["key"])): t for t in tables}
    found = {t["key"]: None for t in tables}
    for start, block in _sections(rows, first_row):
        label = _label_key(block[0][0])
        if label == layout.ERROR_HEADER.casefold():
            continue                      # the error workbook's own message
        table = by_label.get(label)
        if table is None:
            errors["sheet"] = _("Row %(row)s: \"%(label)s\" is not a table of this node.",
                                row=start, label=layout.strip_mark(block[0][0]))
            continue
        found[table["key"]] = _table_lines(table, block, start, errors)
    return found


def _table_lines(table, block, start, errors):
    columns = layout.table_column_slots(table)
    header = _pad(block[1] if len(block) > 1 else [], len(columns))
    for index, column in enumerate(columns):
        if _label_key(header[index]) != _label_key(column.label):
            errors[table["key"]] = _(
                "Row %(row)s should hold the column headers of %(table)s.",
                row=start + 1, table=field(table["key"], table.get("label", table["key"])))
            return None
    lines = []
    for raw in block[2:]:
        values = zip(columns, _pad(raw, len(columns)))
        line = {c.key: cells.field_value(c.kind, v) for c, v in values}
        lines.append({k: v for k, v in line.items() if v is not None})
    return lines or None
