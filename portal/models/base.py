"""Helpers shared by the model modules."""
from datetime import datetime, timezone


def contains(column, text):
    """SQL condition: ``column`` contains ``text`` case-insensitively, its
    ``%`` and ``_`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


def utcnow():
    """Naive UTC timestamp: one convention for SQLite and PostgreSQL columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


MAX_ID = 2**31 - 1  # the id columns are 32-bit integers (PostgreSQL refuses larger)


def is_db_id(value):
    """A JSON or Python integer (not a boolean) that can name a row."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


# Id lists go into SQL ``IN`` clauses this many at a time: under SQLite's
# bound-parameter limit, and short statements on PostgreSQL.
IN_CLAUSE_CHUNK = 900


def chunks(values, size=IN_CLAUSE_CHUNK):
    """Consecutive slices of ``values`` of at most ``size`` elements."""
    for start in range(0, len(values), size):
        yield values[start:start + size]
