"""Reading a store's log: pages of events after a cursor, bounded by count and bytes, and heads."""

import collections
import functools
from dataclasses import dataclass
from typing import NamedTuple

from django.db import ProgrammingError, connections

from ..models import Store
from . import placement
from .backends import _operations
from .statements import EVENT_COLUMNS
from .stores import _locate, _locations, _moved_away


class StoredEvent(NamedTuple):
    """One eventlog row (a tuple: pages of thousands are built per pull)."""

    seq_num: int
    parent_seq_num: int
    name: str
    args: str | None
    created_at: str
    client_id: str
    session_id: str


@dataclass(frozen=True)
class Page:
    """Events after a cursor, and the store's head and backendId when they were read."""

    events: list
    head: int
    backend_id: str | None = None

    @property
    def remaining(self):
        """Events after this page up to the head; seqNums are contiguous, so no COUNT is needed."""
        last = self.events[-1].seq_num if self.events else self.head
        return max(0, self.head - last)


@functools.cache
def _head_sql(alias):
    """A read's head and backendId: the ORM's query for them, written once, since a long pull reads a page
    of events after each (building the ORM's query cost as much CPU as reading about 400 events)."""
    quote = _operations(alias).quote_name
    return "SELECT {}, {} FROM {} WHERE {} = %s".format(
        quote("head"), quote("backend_id"), quote(Store._meta.db_table), quote("id")
    )


def _select_sql(connection, db_table):
    quote = connection.ops.quote_name
    return "SELECT {} FROM {} WHERE {seq} > %s AND {seq} <= %s ORDER BY {seq} LIMIT %s".format(
        ", ".join(quote(c) for c in EVENT_COLUMNS), quote(db_table), seq=quote("seqNum")
    )


# Bytes of args one read keeps (beyond its first event): a backlog of large events is read in smaller pages,
# so that a pull costs the server a bounded amount of memory whatever the events' size.
READ_PAGE_BYTES = 4_000_000
# Rows taken from the database cursor at a time while a read fills up to READ_PAGE_BYTES.
_FETCH_ROWS = 100


def read_page(store_id, after, limit, create=False, max_bytes=READ_PAGE_BYTES):
    """Up to ``limit`` events with seqNum > ``after``, ascending, and the head they were read at.

    A page holds about ``max_bytes`` of args at the most (and at least one
    event); ``Page.remaining`` still counts every event up to the head.
    PostgreSQL's driver still receives up to ``limit`` rows per read.

    With ``create``, an unknown store is created first, so that its (empty)
    page carries the backendId later pushes will be checked against.

    Rows are bounded by the head read first: every event up to the head is
    committed (the head moves in the same transaction), so a page is consistent
    without a read transaction — which on SQLite would queue behind writers.
    """
    location = _locate(store_id, create=create)
    if location is None:
        return Page(events=[], head=0, backend_id=None)
    try:
        page = _read_page_at(location, after, limit, max_bytes)
    except ProgrammingError as error:
        if not _moved_away(location, error):
            raise
        _locations.pop(store_id)
        return read_page(store_id, after, limit, create, max_bytes)
    if page is None:
        _locations.pop(store_id)
        return Page(events=[], head=0, backend_id=None)
    return page


def _read_page_at(location, after, limit, max_bytes):
    """``read_page`` of the store at ``location``; None when its row is gone (it was deleted)."""
    with connections[location.database].cursor() as cursor:
        cursor.execute(_head_sql(location.database), [location.pk])
        stored = cursor.fetchone()
        if stored is None:
            return None
        head, backend_id = stored
        events, size = [], 0
        # The range ends at the last seqNum the page can hold (seqNums are contiguous), not only at the head: on
        # a table PostgreSQL has not analyzed yet, a range up to the head is planned as a scan of every event
        # left, sorted for each page, which made a long backlog's reads grow with its square. A table with a gap
        # (one adopted as it was found) is read up to the head when the shorter range finds nothing.
        for upper in dict.fromkeys((min(head, after + limit), head)):
            cursor.execute(_select_sql(cursor.db, location.db_table), [after, upper, limit])
            # Rows are taken as they come and the rest is left unread once the page is full (SQLite steps
            # its statement row by row; psycopg builds rows only as they are fetched).
            while size < max_bytes:
                rows = cursor.fetchmany(_FETCH_ROWS)
                if not rows:
                    break
                for row in rows:
                    events.append(StoredEvent._make(row))
                    size += len(row[3] or "")
                    if size >= max_bytes:
                        break
            if events:
                break
    return Page(events=events, head=head, backend_id=backend_id)


def head(store_id):
    """The store's head seqNum (0 for an unknown or empty store)."""
    return heads([store_id]).get(store_id, 0)


def heads(store_ids):
    """``{store_id: head}`` for the known stores among ``store_ids``, in one query per database."""
    by_database = collections.defaultdict(list)
    for store_id, alias in placement.databases_of(store_ids).items():
        by_database[alias].append(store_id)
    found = {}
    for alias, ids in by_database.items():
        found.update(Store.objects.using(alias).filter(store_id__in=ids).values_list("store_id", "head"))
    return found
