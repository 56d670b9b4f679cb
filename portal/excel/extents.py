"""How far each worksheet of an upload reaches, checked against a bound before
any spreadsheet library reads it.

python-calamine turns a sheet into one rectangle of cells, from the first to
the last cell it finds: a 5 KB file with cells at A1 and XFD1048576 asks for
about 550 GB and the allocation failure aborts the whole process. So every
part a reader may take for a sheet (anything under ``xl/worksheets/``,
``xl/chartsheets/`` or ``xl/dialogsheets/``, matched without regard to case,
as calamine does) is measured while ``safety`` unpacks it:

* ``Screen`` looks at the raw bytes with a few regular expressions, with no
  Python work per cell, and passes the layout Excel, LibreOffice, WPS and
  openpyxl write: every ``<c>`` and ``<row>`` tag opens with an
  ``r="B7"``-style reference inside the bound, none has a namespace prefix,
  and every ``<dimension>`` lies inside the bound;
* anything else (cells without ``r``, whose place follows from their order;
  prefixed tags; references beyond the bound, even inside a comment) is
  measured exactly by ``measure``, which streams the part through expat and
  walks it the way calamine does, stopping at the first place beyond the
  bound.

Rows and cells count whether or not they hold a value, and so does the
``<dimension>`` a sheet declares (readers use it to size their buffers):
each is part of the size the sheet claims.
"""
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from xml.parsers import expat

SHEET_FOLDERS = ("xl/worksheets/", "xl/chartsheets/", "xl/dialogsheets/")
WORKBOOK = "xl/workbook.xml"
WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"
CHUNK = 256 * 1024
MAX_CARRY = 1024 * 1024      # longest text the screen keeps across chunks (Excel: 32 KB a cell)
REFERENCE = re.compile(r"([A-Za-z]*)([0-9]+)")


@dataclass(frozen=True)
class Bound:
    """The most rows and columns a sheet may reach (1-based, from A1).

    Make one with ``at_least``: it rounds up to a row number whose later
    digits are all 9 and a column whose later letters are all Z (51,001 ->
    59,999; column AD -> AZ), at most twice as far, so that the screen tells
    a reference beyond it by its length and first character alone.
    """
    rows: int
    columns: int

    @classmethod
    def at_least(cls, rows, columns):
        digits, letters = str(max(1, rows)), column_letters(max(1, columns))
        rows = int(digits[0] + "9" * (len(digits) - 1))
        columns = column_number(letters[0] + "Z" * (len(letters) - 1))
        return cls(rows, columns)

    def holds(self, rows, columns):
        return rows <= self.rows and columns <= self.columns


@dataclass(frozen=True)
class SheetBounds:
    """The bound of each sheet by name; ``other`` for every other sheet."""
    by_name: dict
    other: Bound

    def for_sheet(self, name):
        return self.by_name.get(name, self.other)

    @property
    def largest(self):
        """For a sheet part no sheet of the workbook points at."""
        bounds = [self.other, *self.by_name.values()]
        return Bound(max(b.rows for b in bounds), max(b.columns for b in bounds))


@dataclass(frozen=True)
class Extent:
    """How far a sheet reaches: its last row and column (1-based)."""
    rows: int
    columns: int


class Unreadable(Exception):
    """The part is not XML a sheet reader could take as a sheet."""


def column_letters(number):
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def column_number(letters):
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


def parse_reference(text, *, column):
    """(row, column) of "B7" (1-based; column 0 when absent and not required),
    or None when calamine would refuse the reference too."""
    match = REFERENCE.fullmatch(text)
    if match is None or int(match.group(2)) == 0 or (column and not match.group(1)):
        return None
    return int(match.group(2)), column_number(match.group(1))


def is_sheet_part(name):
    return name.lower().startswith(SHEET_FOLDERS)


# --- the screen --------------------------------------------------------------------------

def _round_down(number, *, letters):
    """The greatest row number (digit then nines) or column (letter then Zs)
    that is not after ``number``: the screen passes only up to there."""
    text = column_letters(number) if letters else str(number)
    last, to_number = ("Z", column_number) if letters else ("9", int)
    if len(text) == 1 or set(text[1:]) == {last}:
        return number
    if text[0] in "1A":
        return to_number(last * (len(text) - 1))
    return to_number(chr(ord(text[0]) - 1) + last * (len(text) - 1))


def _digits_within(number):
    """A regex for a row number from 1 to ``number`` (leading zeros allowed),
    ``number`` being a digit followed by nines."""
    text = str(number)
    shorter = f"|[1-9][0-9]{{0,{len(text) - 2}}}" if len(text) > 1 else ""
    return f"0*+(?:[1-{text[0]}][0-9]{{{len(text) - 1}}}{shorter})"


def _letters_within(number):
    """A regex for column letters (any case, or none) up to column ``number``,
    ``number`` being a column whose later letters are all Z."""
    text = column_letters(number)
    first = f"[A-{text[0]}a-{text[0].lower()}]"
    return f"(?:{first}[A-Za-z]{{{len(text) - 1}}}|[A-Za-z]{{0,{len(text) - 1}}})"


# The rest of the tag as usual writers put it: ' name="value"' for names other
# than r (calamine takes a cell's last r), then ">" or "/>". Else: measure.
OTHER_ATTRIBUTES = r"""(?: [^\s=/>r"'][^\s=/>"']*="[^"]*")*+/?>"""


@lru_cache(maxsize=64)
def _screen_patterns(bound):
    """Patterns whose any match sends the part to ``measure``."""
    rows = _digits_within(_round_down(bound.rows, letters=False))
    reference = f"{_letters_within(_round_down(bound.columns, letters=True))}{rows}"
    row = f"[A-Za-z]*{rows}"
    sources = [
        # a cell tag other than r="B7" inside the bound, then other attributes
        f'<c(?=[\\s>/])(?! r="{reference}"{OTHER_ATTRIBUTES})',
        # a row tag other than r="7" inside the bound, then other attributes
        f'<row(?=[\\s>/])(?! r="{row}"{OTHER_ATTRIBUTES})',
        # prefixed cells, rows or dimensions: calamine reads them by their local name
        r":(?:c|row|dimension)(?=[\s>/])",
        # a dimension other than ref="A1:B7" inside the bound
        f'<dimension(?=[\\s>/])(?! ref="{reference}(?::{reference})?"\\s*/?>)',
    ]
    return tuple(re.compile(source.encode()) for source in sources)


class Screen:
    """Fed the chunks of one part; ``flagged`` when it needs ``measure``.

    Each chunk is searched up to its last "<", the rest is carried over, so
    no tag is ever split between two searches.
    """

    def __init__(self, bound):
        self.patterns = _screen_patterns(bound)
        self.carry = b""
        self.flagged = False

    def feed(self, chunk):
        if self.flagged:
            return
        window = self.carry + chunk
        cut = window.rfind(b"<")
        if cut <= 0:
            self.carry = window
        else:
            self._search(window[:cut])
            self.carry = window[cut:]
        if len(self.carry) > MAX_CARRY:
            self.flagged = True

    def close(self):
        if not self.flagged:
            self._search(self.carry)
        self.carry = b""

    def _search(self, window):
        self.flagged = self.flagged or any(p.search(window) for p in self.patterns)


# --- the exact walk -------------------------------------------------------------------------

class _Beyond(Exception):
    pass


def _local(name):
    """The local name as calamine's XML library cuts it: after the first colon."""
    head, colon, tail = name.partition(":")
    return tail if colon else head


class _Walk:
    """Where calamine puts each cell: a cell's place is its r reference, else
    the row (r of its row, or one after the previous row) and the column after
    the previous cell of the row. Only the first sheetData counts; rows or
    cells nested in a cell or a row are refused, so that the walk and calamine
    cannot disagree about where a cell ends."""

    def __init__(self, bound):
        self.bound = bound
        self.rows = self.columns = 0
        self.row = self.column = 0        # the next implied place, 0-based
        self.state = "before"             # before | data | after (the first sheetData)
        self.open = []                    # open row / c elements inside sheetData

    def reach(self, row, column):
        self.rows, self.columns = max(self.rows, row), max(self.columns, column)
        if not self.bound.holds(self.rows, self.columns):
            raise _Beyond

    def start(self, name, attrs):
        local = _local(name)
        if local == "dimension":
            for part in (attrs.get("ref") or "").split(":"):
                place = parse_reference(part, column=True)
                if place is not None:
                    self.reach(*place)
        elif local == "sheetData":
            if self.state == "before":
                self.state = "data"
        elif self.state == "data" and local in ("row", "c"):
            if "c" in self.open or (local == "row" and self.open):
                raise Unreadable
            self.open.append(local)
            getattr(self, "_" + local)(attrs.get("r"))

    def _row(self, reference):
        if reference is not None:
            place = parse_reference(reference, column=False)
            if place is None:
                raise Unreadable
            self.row = place[0] - 1
            self.reach(place[0], 0)

    def _c(self, reference):
        if reference is None:
            self.reach(self.row + 1, self.column + 1)
            return
        place = parse_reference(reference, column=True)
        if place is None:
            raise Unreadable
        self.column = place[1] - 1
        self.reach(*place)

    def end(self, name):
        if self.state != "data":
            return
        local = _local(name)
        if local == "sheetData":
            self.state = "after"
        elif local in ("row", "c") and self.open and self.open[-1] == local:
            self.open.pop()
            if local == "row":
                self.row, self.column = self.row + 1, 0
            else:
                self.column += 1


def _refuse_doctype(*_args):
    raise Unreadable


def measure(archive, info, bound):
    """The extent of one part, exact as long as it lies inside ``bound``; past
    it, the first place found beyond. Raises Unreadable when no sheet reader
    could take the part for a sheet."""
    walk = _Walk(bound)
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.StartElementHandler = walk.start
    parser.EndElementHandler = walk.end
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(CHUNK):
                parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _Beyond:
        pass
    except (expat.ExpatError, ValueError):
        raise Unreadable
    return Extent(walk.rows, walk.columns)


# --- which sheet each part is ---------------------------------------------------------------

def _walk_part(archive, name, handler):
    """Call handler(local name, attrs) for every element of the part ``name``
    (matched without regard to case, the first one, as calamine does)."""
    info = next((i for i in archive.infolist() if i.filename.lower() == name), None)
    if info is None:
        return
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.StartElementHandler = lambda tag, attrs: handler(_local(tag), attrs)
    with archive.open(info) as stream:
        while chunk := stream.read(CHUNK):
            parser.Parse(chunk, False)
    parser.Parse(b"", True)


def _sheet_path(target):
    """The part a workbook relationship points at, as calamine resolves it."""
    if target.startswith("/xl/"):
        return target[1:]
    return target if target.startswith("xl/") else "xl/" + target


def sheet_names_by_part(archive):
    """{lower-case part name: sheet name} from the workbook and its relationships;
    empty when they cannot be read (then every sheet part gets the largest bound)."""
    targets, sheets = {}, []

    def relationship(local, attrs):
        if local == "Relationship" and "Id" in attrs:
            targets[attrs["Id"]] = attrs.get("Target", "")

    def sheet(local, attrs):
        if local == "sheet":
            sheets.append((attrs.get("name", ""), attrs.get("r:id", attrs.get("relationships:id"))))

    try:
        _walk_part(archive, WORKBOOK_RELS, relationship)
        _walk_part(archive, WORKBOOK, sheet)
    except (Unreadable, expat.ExpatError, ValueError, zipfile.BadZipFile, EOFError, OSError):
        return {}
    names = {}
    for name, relation in sheets:
        if relation in targets:
            names.setdefault(_sheet_path(targets[relation]).lower(), name)
    return names
