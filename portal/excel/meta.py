"""The hidden metadata sheet: which node, process version and mode a workbook
was made for, so a file for anything else is refused with a clear message.

The sheet holds one ``key | value`` pair per row. Error workbooks also name
the batch whose failed items they hold. The portal writes about ten rows of
two cells; ``BOUND`` is how far an upload's metadata sheet may reach.
"""
from dataclasses import dataclass

from flask_babel import gettext as _

from portal.excel import UnusableFile
from portal.excel.extents import Bound
from portal.excel.layout import FORMAT_VERSION, MODES

META_SHEET = "_portal"
LISTS_SHEET = "_lists"          # dropdown choices that are too long to inline
MARKER = "portal-workbook"
OWN_SHEET_KEY = "own_sheet"
BOUND = Bound.at_least(rows=100, columns=10)


@dataclass(frozen=True)
class Meta:
    kind: str                   # template | errors
    node_id: int
    process_key: str
    process_version: int
    mode: str
    locale: str
    batch_id: int | None = None
    format: int = FORMAT_VERSION
    own_sheets: tuple = ()      # visible sheets of the portal's own (instructions)


def meta_for(node, mode, locale, *, kind="template", batch_id=None, own_sheets=()):
    return Meta(kind=kind, node_id=node.id, process_key=node.process.key,
                process_version=node.process.version, mode=mode, locale=str(locale),
                batch_id=batch_id, own_sheets=tuple(own_sheets))


def meta_rows(meta):
    rows = [["marker", MARKER], ["format", meta.format], ["kind", meta.kind],
            ["node_id", meta.node_id], ["process_key", meta.process_key],
            ["process_version", meta.process_version], ["mode", meta.mode],
            ["locale", meta.locale]]
    if meta.batch_id is not None:
        rows.append(["batch_id", meta.batch_id])
    rows.extend([OWN_SHEET_KEY, name] for name in meta.own_sheets)
    return rows


def _whole(value):
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def parse_meta(rows):
    """Meta from the sheet's rows; UnusableFile when it is not ours or damaged."""
    pairs, own_sheets = {}, []
    for row in rows:
        if len(row) < 2 or row[0] in ("", None):
            continue
        key = str(row[0]).strip()
        if key == OWN_SHEET_KEY:
            own_sheets.append(str(row[1]))
        else:
            pairs[key] = row[1]
    if pairs.get("marker") != MARKER:
        raise not_a_template()
    values = {name: _whole(pairs.get(name)) for name in
              ("format", "node_id", "process_version", "batch_id")}
    if None in (values["format"], values["node_id"], values["process_version"]):
        raise not_a_template()
    return Meta(kind=str(pairs.get("kind", "")), node_id=values["node_id"],
                process_key=str(pairs.get("process_key", "")),
                process_version=values["process_version"], mode=str(pairs.get("mode", "")),
                locale=str(pairs.get("locale", "en")), batch_id=values["batch_id"],
                format=values["format"], own_sheets=tuple(own_sheets))


def not_a_template():
    return UnusableFile(_("This file was not made from a portal template. Download the "
                          "node's template, fill it in and upload that file."))


def mode_name(mode):
    return _("one row per task") if mode == "single" else _("one sheet per task")


def check_meta(meta, node, mode):
    """Refuse a workbook made for another node, process version, mode or format."""
    if meta.format != FORMAT_VERSION:
        raise UnusableFile(_("This file was made by another version of the portal. "
                             "Download a new template."))
    if meta.process_key == node.process.key and meta.process_version != node.process.version:
        raise UnusableFile(_("This file is for version %(theirs)s of the process, but this node "
                             "belongs to version %(ours)s. Download a new template.",
                             theirs=meta.process_version, ours=node.process.version))
    if meta.node_id != node.id or meta.process_key != node.process.key:
        raise UnusableFile(_("This file is for another node. Download the template of "
                             "node %(node)s.", node=node.name))
    if meta.mode not in MODES:
        raise not_a_template()
    if meta.mode != mode:
        raise UnusableFile(_("This file is laid out as %(theirs)s, not %(ours)s. Choose the "
                             "matching mode or download the other template.",
                             theirs=mode_name(meta.mode), ours=mode_name(mode)))
