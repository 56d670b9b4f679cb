"""Helpers shared by the model modules."""
from datetime import datetime, timezone


def utcnow():
    """Naive UTC timestamp: one convention for SQLite and PostgreSQL columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
