"""Checks on an uploaded file before any spreadsheet library reads it.

In order: the file signature (an old .xls or a CSV is named as such), the zip
directory (entry count, total unpacked size and compression ratio, read from
the directory before anything is unpacked), macros, the content types, and
then every part is unpacked once as a stream: XML parts go through defusedxml
with DTDs refused, and every part must unpack to exactly the size and CRC its
directory entry declares, so the limits above hold for whatever reads the
file next. Given the bound of each sheet, every part a reader may take for a
sheet is also measured on the way (``extents``): a sheet reaching beyond its
bound is refused before any reader allocates room for it. Each problem
raises ``UnusableFile`` (HTTP 400) with a message a user can act on.
"""
import io
import zipfile
import zlib
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, fromstring
from flask_babel import gettext as _

from portal.excel import UnusableFile, extents

OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_SIGNATURE = b"PK\x03\x04"
CHUNK = 256 * 1024
CONTENT_TYPES = "[Content_Types].xml"
WORKBOOK_TYPES = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
)
RATIO_CHECK_FROM = 1024 * 1024   # small parts may compress well without being bombs


@dataclass(frozen=True)
class Limits:
    max_entries: int
    max_unpacked_bytes: int
    max_ratio: int = 200
    reader_memory_mb: int = 512       # address space of the child that reads the workbook
    reader_seconds: int = 60          # its wall-clock (and CPU) time


def limits_from_config(config):
    """Limits derived from the app config; MAX_IMPORT_ROWS sheets need as many parts."""
    return Limits(
        max_entries=config.get("MAX_IMPORT_ENTRIES") or 2 * config["MAX_IMPORT_ROWS"] + 100,
        max_unpacked_bytes=(config.get("MAX_IMPORT_UNPACKED_MB") or 300) * 1024 * 1024,
        max_ratio=config.get("MAX_IMPORT_RATIO") or 200,
        reader_memory_mb=config.get("EXCEL_READER_MEMORY_MB") or 512,
        reader_seconds=config.get("EXCEL_READER_SECONDS") or 60)


def check_upload(data, limits, bounds=None):
    """Raise UnusableFile unless ``data`` is a plain .xlsx that is safe to read;
    with ``bounds`` (an ``extents.SheetBounds``) also unless every sheet fits
    its bound."""
    _check_signature(data)
    archive = _open_zip(data)
    with archive:
        infos = archive.infolist()
        _check_directory(infos, limits)
        _check_no_macros(infos)
        _check_content_types(archive)
        names = extents.sheet_names_by_part(archive) if bounds is not None else {}
        for info in infos:
            if bounds is None or not extents.is_sheet_part(info.filename):
                _check_part(archive, info)
                continue
            name = names.get(info.filename.lower())
            bound = bounds.for_sheet(name) if name is not None else bounds.largest
            _check_sheet(archive, info, name or info.filename, bound)


def _check_sheet(archive, info, name, bound):
    """Check one sheet part like any other, and refuse it beyond ``bound``."""
    screen = extents.Screen(bound)
    _check_part(archive, info, screen)
    if not screen.flagged:
        return
    try:
        extent = extents.measure(archive, info, bound)
    except extents.Unreadable:
        raise damaged()
    if not bound.holds(extent.rows, extent.columns):
        raise too_large(name, extent, bound)


def too_large(name, extent, bound):
    return UnusableFile(_(
        "The sheet \"%(sheet)s\" is too large for this import: it reaches row %(row)s and "
        "column %(column)s, but only rows 1 to %(rows)s and columns A to %(last)s are read. "
        "Delete everything outside them (cells and their formatting) and upload the file "
        "again.", sheet=name[:100], row=extent.rows,
        column=extents.column_letters(extent.columns) or "A", rows=bound.rows,
        last=extents.column_letters(bound.columns)))


def _check_signature(data):
    if not data:
        raise UnusableFile(_("The file is empty."))
    if data.startswith(OLE2_SIGNATURE):
        raise UnusableFile(_("This is an old Excel 97-2003 (.xls) file or a password-protected "
                             "workbook. Save it as Excel Workbook (.xlsx) without a password "
                             "and upload it again."))
    if not data.startswith(ZIP_SIGNATURE):
        raise UnusableFile(_("This is not an Excel workbook (.xlsx); CSV and other formats are "
                             "not accepted. Fill in the template and save it as .xlsx."))


def damaged():
    return UnusableFile(_("The file is damaged or incomplete. Save it again as .xlsx and "
                          "upload it again."))


def _open_zip(data):
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        raise damaged()


def _check_directory(infos, limits):
    if len(infos) > limits.max_entries:
        raise UnusableFile(_("The file holds too many parts (%(n)s) to be a workbook the "
                             "portal accepts.", n=len(infos)))
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise damaged()
    total = sum(info.file_size for info in infos)
    if total > limits.max_unpacked_bytes:
        raise UnusableFile(_("The file unpacks to more than %(mb)s MB; it is too large to "
                             "import.", mb=limits.max_unpacked_bytes // (1024 * 1024)))
    for info in infos:
        if info.flag_bits & 0x1:  # encrypted entry
            raise damaged()
        if info.file_size >= RATIO_CHECK_FROM and (
                info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise UnusableFile(_("The file is compressed suspiciously well (a \"zip bomb\"?) "
                                 "and is refused."))


def macros_refused():
    return UnusableFile(_("Workbooks with macros (.xlsm) are not accepted. Save the file as "
                          "Excel Workbook (.xlsx) and upload it again."))


def _check_no_macros(infos):
    if any(info.filename.lower().endswith("vbaproject.bin") for info in infos):
        raise macros_refused()


def _check_content_types(archive):
    try:
        root = fromstring(archive.read(CONTENT_TYPES), forbid_dtd=True)
    except KeyError:
        raise UnusableFile(_("This is not an Excel workbook (.xlsx). Fill in the template and "
                             "save it as .xlsx."))
    except (ParseError, DefusedXmlException, zipfile.BadZipFile, zlib.error, EOFError):
        raise damaged()
    types = [element.get("ContentType", "") for element in root.iter()]
    if any("macroenabled" in t.lower() or "vbaproject" in t.lower() for t in types):
        raise macros_refused()
    if not any(t in WORKBOOK_TYPES for t in types):
        raise UnusableFile(_("This is not an Excel workbook (.xlsx). Fill in the template and "
                             "save it as .xlsx."))


class _RootReached(Exception):
    """Raised by the parser target at the first element: the prolog is over."""


class _PrologTarget:
    def start(self, tag, attrib):
        raise _RootReached

    def close(self):
        return None


def _looks_like_xml(head):
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"<") or head.startswith((b"\xff\xfe", b"\xfe\xff"))


def _check_part(archive, info, screen=None):
    """Unpack one part as a stream; check the prolog of XML parts with defusedxml.

    A DTD, and so every entity declaration, can only stand in the prolog
    (before the root element), so the XML check stops at the root element;
    the rest is still unpacked to prove its size and CRC. A sheet part's
    chunks also go through its ``screen``.
    """
    parser = None
    try:
        with archive.open(info) as stream:
            chunk = stream.read(CHUNK)
            if _looks_like_xml(chunk):
                parser = DefusedXMLParser(target=_PrologTarget(), forbid_dtd=True)
            while chunk:
                if parser is not None:
                    try:
                        parser.feed(chunk)
                    except _RootReached:
                        parser = None
                if screen is not None:
                    screen.feed(chunk)
                chunk = stream.read(CHUNK)
        if parser is not None:
            parser.close()
        if screen is not None:
            screen.close()
    except DefusedXmlException:
        raise UnusableFile(_("The file contains XML declarations (DTD or entities) that the "
                             "portal refuses. Save it again as .xlsx from Excel."))
    except (ParseError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError, ValueError, OSError):
        raise damaged()
