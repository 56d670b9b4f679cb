"""The instructions sheet: how to fill in a workbook, in the reader's language.

Call inside ``flask_babel.force_locale`` of the workbook's locale.
"""
from flask import current_app
from flask_babel import gettext as _, lazy_gettext as _l

from portal.excel import layout

TYPE_NAMES = {
    "text": _l("text"), "number": _l("number"), "date": _l("date (YYYY-MM-DD)"),
    "select": _l("choice"), "boolean": _l("yes/no"), "table": _l("table"),
}


def sheet_title():
    return _("Instructions")


def _field_line(field):
    kind = field.get("type", "text")
    parts = [f"{field.get('label', field['key'])}: {TYPE_NAMES.get(kind, kind)}"]
    if field.get("required"):
        parts.append(_("required when approving"))
    if kind == "select":
        options = ", ".join(map(str, field.get("options", [])))
        parts.append(_("one of: %(options)s", options=options))
    if field.get("min") is not None:
        parts.append(_("at least %(n)s", n=field["min"]))
    if field.get("max") is not None:
        parts.append(_("at most %(n)s", n=field["max"]))
    if field.get("max_length"):
        parts.append(_("at most %(n)s characters", n=field["max_length"]))
    return "  - " + "; ".join(parts)


def lines(node, mode, locale, *, errors=False):
    approve, reject = layout.ACTION_LABELS[layout.language(locale)]
    result = [
        _("How to fill in this workbook"),
        _("Node: %(node)s. Process: %(process)s, version %(version)s.",
          node=node.name, process=node.process.name, version=node.process.version),
    ]
    if mode == "single":
        result += [
            _("One row per task. Keep the columns in their order; do not add, move or delete "
              "columns."),
            _("Delete the rows of tasks you do not want to decide now. Rows that name a task "
              "but hold nothing else are skipped."),
            _("At most %(n)s rows per file.", n=current_app.config["MAX_IMPORT_ROWS"]),
        ]
    else:
        result += [
            _("One sheet per task, named by its task id. Column A holds the labels, column B "
              "the values."),
            _("Table fields follow after a blank row: the table's name, a row of column "
              "headers, then one row per line until the next blank row. Insert rows for "
              "more lines."),
            _("Delete the sheets of tasks you do not want to decide now. At most %(n)s sheets "
              "per file.", n=current_app.config["MAX_IMPORT_ROWS"]),
        ]
    result += [
        _("Grey cells are the portal's: the task id identifies the task (keep it as it is); the "
          "title is shown for reference and not read."),
        _("Action: choose %(approve)s or %(reject)s.", approve=approve, reject=reject),
        _("Labels ending with * must be filled in when you approve."),
        _("Each task's current values are filled in. A cell left as it is, or emptied, keeps the "
          "task's value (a required field is checked against it); a row or sheet without an "
          "action whose values you did not change is skipped."),
        _("Dates: YYYY-MM-DD. Formulas are not calculated by the portal: the value Excel "
          "last showed is used."),
        _("Do not rename the sheets or change the hidden sheets: they tell the portal which "
          "node, process version and layout this file is for."),
        _("Upload the file on the portal's import page. You see a preview of every row "
          "before anything is approved."),
    ]
    if errors:
        result.append(_("This error workbook holds only the tasks that failed, with the reason "
                        "in the Error column (or row) and the faulty cells in red. Correct "
                        "them and upload this file again to retry them."))
    result.append(_("Fields:"))
    result += [_field_line(f) for f in node.fields] or ["  -"]
    return result
