"""Where each value of a task lives in a workbook (contract (docs/contract.md) section 6), and the
words the portal writes into dropdowns.

Single mode: one column per *slot*, in order task id, title, action, comment,
then one per non-table field. Per-instance mode: the same slots as rows
(label in column A, value in column B), then one section per table field.
Headers and labels are translated, so call these inside the workbook's locale
(``flask_babel.force_locale``); readers go by position, never by header text,
except for field labels, which come from the definition and guard against
moved or deleted columns.
"""
from dataclasses import dataclass

from flask_babel import gettext as _
from openpyxl.utils import get_column_letter

FORMAT_VERSION = 1
DATA_START_ROW = 2            # single mode: row 1 holds the headers
EXCEL_MAX_ROW = 1048576
ERROR_HEADER = "Error"        # fixed by the contract, in every language
REQUIRED_MARK = "*"
MODES = ("single", "per_instance")

# Dropdown words per language. Readers accept every word of every language
# (and a few synonyms), so a file keeps working after a language switch.
ACTION_LABELS = {"en": ("approve", "reject"), "zh_CN": ("通过", "驳回")}
BOOLEAN_LABELS = {"en": ("yes", "no"), "zh_CN": ("是", "否")}
ACTION_WORDS = {
    "approve": "approve", "approved": "approve", "通过": "approve", "同意": "approve",
    "批准": "approve", "reject": "reject", "rejected": "reject", "驳回": "reject",
    "拒绝": "reject", "不同意": "reject",
}


@dataclass(frozen=True)
class Slot:
    """One value of a task: a column in single mode, a row in per-instance mode."""
    key: str
    label: str                 # as shown, ending with "*" when required
    field: dict | None = None  # the node's field definition, for form fields
    required: bool = False
    read_only: bool = False

    @property
    def kind(self):
        return self.field.get("type", "text") if self.field else self.key


def language(locale):
    return "zh_CN" if str(locale or "").lower().startswith("zh") else "en"


def mark_required(label, required):
    return f"{label}{REQUIRED_MARK}" if required else label


def strip_mark(text):
    """A header or label without its required mark, for comparisons."""
    return str(text if text is not None else "").strip().rstrip(REQUIRED_MARK).strip()


def fixed_slots():
    return [
        Slot("task_id", _("Task ID"), read_only=True),
        Slot("title", _("Title"), read_only=True),
        Slot("action", mark_required(_("Action"), True), required=True),
        Slot("comment", _("Comment")),
    ]


def field_slot(field):
    required = bool(field.get("required"))
    return Slot(field["key"], mark_required(field.get("label", field["key"]), required),
                field=field, required=required)


def node_slots(node):
    """Every single-value slot of ``node``: the fixed ones, then its non-table fields."""
    return fixed_slots() + [field_slot(f) for f in node.form_fields]


def table_fields(node):
    return [f for f in node.fields if f.get("type") == "table"]


def table_column_slots(table):
    return [field_slot(c) for c in table.get("columns", [])]


def parse_action(value):
    """The action a cell names, in any language; unknown text is returned as is
    so that validation can say what is wrong with it."""
    if value is None:
        return None
    text = str(value).strip()
    return ACTION_WORDS.get(text.lower(), text) if text else None


def action_label(action, locale):
    approve, reject = ACTION_LABELS[language(locale)]
    return {"approve": approve, "reject": reject}.get(action, action)


def boolean_label(value, locale):
    yes, no = BOOLEAN_LABELS[language(locale)]
    return yes if value else no


def places(node, mode):
    """Where each key of an entry's errors is shown in a file of ``mode``:
    "E (Amount)" in single mode, the row label in per-instance mode."""
    result = {}
    for index, slot in enumerate(node_slots(node), start=1):
        label = strip_mark(slot.label)
        result[slot.key] = f"{get_column_letter(index)} ({label})" if mode == "single" else label
    result.update({t["key"]: t.get("label", t["key"]) for t in table_fields(node)})
    result["sheet"] = _("Sheet")
    return result
