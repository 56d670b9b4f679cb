"""Pagination: keyset pages on an id column, for long lists (a batch's items,
the API, an instance's history read from its end), and numbered pages with a
total, for short ones a person browses.

A keyset page is one indexed range scan, however deep the reader has paged,
so a batch of 100,000 items pages as fast as one of ten.
"""
from dataclasses import dataclass

from portal.infra.extensions import db


@dataclass
class Page:
    """One page of rows plus the cursors of its neighbours (None at either end)."""
    rows: list
    previous_cursor: int | None
    next_cursor: int | None


EMPTY = Page([], None, None)


def keyset_page(query, column, *, limit, after=None, before=None, descending=False):
    """Rows of ``query`` that follow ``after`` (or precede ``before``) in display order.

    Display order is ``column`` ascending, or descending with ``descending``.
    """
    def beyond(cursor):
        return column < cursor if descending else column > cursor

    def behind(cursor):
        return column > cursor if descending else column < cursor

    forward = column.desc() if descending else column.asc()
    backward = column.asc() if descending else column.desc()
    if before is not None:
        rows = db.session.execute(query.where(behind(before)).order_by(backward)
                                  .limit(limit + 1)).scalars().all()
        has_previous, has_next = len(rows) > limit, True
        rows = list(reversed(rows[:limit]))
    else:
        if after is not None:
            query = query.where(beyond(after))
        rows = db.session.execute(query.order_by(forward).limit(limit + 1)).scalars().all()
        has_previous, has_next = after is not None, len(rows) > limit
        rows = rows[:limit]
    if not rows:
        return EMPTY
    return Page(rows, rows[0].id if has_previous else None, rows[-1].id if has_next else None)


def latest_page(query, column, *, limit, before=None):
    """The last ``limit`` rows of ``query`` on ascending ``column``, or the ``limit`` rows just
    before ``before``, in ascending order: a list a person reads from its end.

    ``previous_cursor`` is the ``before`` of the page of older rows (None: nothing older);
    ``next_cursor`` is None on the latest page.
    """
    if before is not None:
        return keyset_page(query, column, limit=limit, before=before)
    newest_first = keyset_page(query, column, limit=limit, descending=True)
    return Page(list(reversed(newest_first.rows)), newest_first.next_cursor, None)


@dataclass
class NumberedPage:
    rows: list
    total: int
    page: int
    pages: int


def numbered_page(query, order_by, *, page, page_size):
    """Page ``page`` (held to the pages there are) of ``query`` in ``order_by``."""
    total = db.session.execute(
        db.select(db.func.count()).select_from(query.subquery())).scalar_one()
    pages = max((total + page_size - 1) // page_size, 1)
    page = min(max(page, 1), pages)
    rows = db.session.execute(query.order_by(order_by).offset((page - 1) * page_size)
                              .limit(page_size)).scalars().all()
    return NumberedPage(rows, total, page, pages)
