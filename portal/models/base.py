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


# Id lists go into SQL ``IN`` clauses this many at a time: under SQLite's
# bound-parameter limit, and short statements on PostgreSQL.
IN_CLAUSE_CHUNK = 900


def chunks(values, size=IN_CLAUSE_CHUNK):
    """Consecutive slices of ``values`` of at most ``size`` elements."""
    for start in range(0, len(values), size):
        yield values[start:start + size]
