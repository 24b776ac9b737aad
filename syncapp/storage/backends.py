"""What differs between the store databases' backends, asked without connecting: SQLite's one writer at a
time, how names compare, each database's operations (quoting, adapting values).

Names with a leading underscore here and in the package's other modules are the storage package's own: its
modules share them, nothing outside the package uses them.
"""

import collections
import contextlib
import functools
import threading

from django.db import connections

from . import placement

# One per SQLite database, by alias (see _local_writer).
_sqlite_writers: collections.defaultdict[str, threading.RLock] = collections.defaultdict(threading.RLock)


@functools.cache
def writes_one_at_a_time():
    """Whether a store database takes one writing transaction at a time (SQLite), so that pushes queue for it.

    Cached: on an event loop each task would otherwise build a connection wrapper of its own to ask.
    """
    return any(connections[alias].vendor == "sqlite" for alias in placement.store_databases())


def _local_writer(alias):
    """On SQLite, one writing thread per process and database at a time (reentrant: a push may create its store).

    SQLite allows one writer; threads that meet its lock back off in sleeps of
    up to 100 ms, and one unlucky thread can wait out the whole busy timeout
    while others keep taking the lock (seen as pulls failing "database
    unavailable" while thousands of stores were being created). Queuing every
    writer on a Python lock instead hands the write lock over at once and in
    turn. Other databases lock rows themselves.

    Not inside a transaction that is already open: either this thread took the
    lock before opening it, or the caller opened it (``syncapp.events.commit``
    in ``atomic()``) and it may hold SQLite's lock already, and waiting for the
    Python lock while a thread holding it waits for SQLite's would stall both
    until the busy timeout.
    """
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return contextlib.nullcontext()
    return _sqlite_writers[alias]


def sqlite_writer_lock(alias):
    """The lock a thread of this process holds while it writes to SQLite database ``alias`` (see
    ``_local_writer``)."""
    return _sqlite_writers[alias]


def _table_key(connection, table_name):
    """How the database compares table names: SQLite ignores case, PostgreSQL (quoted) does not."""
    return table_name.lower() if connection.vendor == "sqlite" else table_name


@functools.cache
def _operations(alias):
    """Database ``alias``'s DatabaseOperations (quoting names, adapting values), which never connect.

    Cached: on an event loop each task would otherwise build a connection wrapper of its own to ask.
    """
    return connections[alias].ops
