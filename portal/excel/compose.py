"""A whole portal workbook: the data sheet(s), instructions, hidden metadata and
dropdown lists. Single mode's data sheet is always the first (contract section 6);
in per-instance mode the instructions come first, so a file opens on them."""
from flask_babel import force_locale, gettext as _

from portal.excel import instructions, layout, writer
from portal.excel.meta import meta_for


def data_sheet_title():
    return _("Tasks")


def build_workbook(node, mode, tasks, *, locale, kind="template", batch_id=None, notes=()):
    """Bytes of an .xlsx for ``node`` in ``mode``; ``tasks`` yields TaskValues.

    ``kind="errors"`` adds the Error column (single) or row (per instance).
    ``notes`` are callables giving extra instruction lines in the workbook's locale.
    """
    with_errors = kind == "errors"
    locale = layout.language(locale)      # "zh_Hans_CN" and friends -> "zh_CN"
    with force_locale(locale):
        workbook = writer.new_workbook()
        dropdowns = writer.Dropdowns()
        validations = writer.Validations(dropdowns, locale)
        slots = layout.node_slots(node)
        if mode == "single":
            writer.write_single_sheet(workbook, data_sheet_title(), slots, tasks,
                                      validations=validations, with_errors=with_errors)
        else:
            tables = layout.table_fields(node)
            for task in tasks:
                writer.write_task_sheet(workbook, slots, tables, task, validations=validations,
                                        with_errors=with_errors)
        title = instructions.sheet_title()
        lines = instructions.lines(node, mode, locale, errors=with_errors)
        lines[2:2] = [note() for note in notes]
        writer.write_instructions(workbook, title, lines)
        if mode != "single":
            workbook.move_sheet(title, offset=-workbook.index(workbook[title]))
            workbook.active = 0
        writer.write_meta(workbook, meta_for(node, mode, locale, kind=kind, batch_id=batch_id,
                                             own_sheets=[title]))
        dropdowns.write_sheet(workbook)
        return writer.save(workbook)
