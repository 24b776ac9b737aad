"""A push to a known store on PostgreSQL, run on the event loop: one statement on an async connection.

Every other storage call goes through the database threads (``syncapp.db``),
which costs each call a trip to a thread and a wake-up of the event loop on
the way back: on a batch-1 push that trip was a quarter of the event loop's
time. The push that a store sees most — one client extending the head of a
store this process already knows — is one self-committing statement
(``storage.alone_statement``), so it needs no transaction, no ORM and no
thread: it runs here, on psycopg's async connection, and its commit is
durable (``synchronous_commit``) before it returns, as on the threads.

Anything else (a store not yet known to this process, a stale parent, a
retry, a broken chain, a long batch, a reset in between) moved nothing, and
``append_alone`` returns None for the general path to decide. Errors are
Django's, as from a Django cursor, so the caller handles an outage the same
way whichever path met it.

Connections: up to ``db.database_threads()`` per database and event loop,
opened with the database's Django settings, binding parameters on the server
in unnamed statements (nothing prepared: connection poolers are fine). A
connection that failed is dropped, and the next push opens a new one.
"""

import asyncio
import contextlib
import functools
import time
import types
import weakref

from django.db import connections
from django.db.utils import DatabaseErrorWrapper
from django.utils import timezone

from . import db, storage

try:
    # Django's PostgreSQL backend uses psycopg 3 whenever it is installed; psycopg2 has no async connection.
    import psycopg
except ImportError:
    psycopg = None

# event loop -> {alias: that loop's connections to that database}.
_pools = weakref.WeakKeyDictionary()

# psycopg's errors as Django's, as a Django cursor raises them (DatabaseErrorWrapper needs only the driver).
_as_django_errors = DatabaseErrorWrapper(types.SimpleNamespace(Database=psycopg, errors_occurred=False))


@functools.cache
def applies_to(alias):
    """Whether pushes to stores in database ``alias`` may take this path.

    Cached: on the event loop each task would otherwise build a connection wrapper of its own to ask.
    """
    return psycopg is not None and connections[alias].vendor == "postgresql"


async def append_alone(pending):
    """``pending`` committed as ``storage.Appended``, or None when it must take the general path.

    None also means nothing was written: the statement moves the head and
    inserts the rows together, or neither.
    """
    location = storage.known_location(pending.store_id)
    if location is None or not applies_to(location.database):
        return None
    if pending.backend_id is not None and pending.backend_id != location.backend_id:
        return None
    created_at = storage.now_iso()
    statement = storage.alone_statement(location, pending, created_at, timezone.now(), server_bound=True)
    if statement is None:
        return None
    sql, parameters = statement
    async with _pool(location.database).connection() as connection:
        with _as_django_errors:
            cursor = await connection.execute(sql, parameters)
    return storage.Appended(created_at, location.backend_id) if cursor.rowcount == len(pending.batch) else None


def _pool(alias):
    loop = asyncio.get_running_loop()
    pools = _pools.get(loop)
    if pools is None:
        pools = _pools[loop] = {}
        weakref.finalize(loop, _finish_all, pools)
    pool = pools.get(alias)
    if pool is None:
        pool = pools[alias] = _Pool(alias, db.database_threads())
    return pool


async def close():
    """Close the running event loop's connections (the end of a test that kept them, CONN_MAX_AGE None)."""
    for pool in _pools.pop(asyncio.get_running_loop(), {}).values():
        pool.finish()


def _finish_all(pools):
    """Close the connections of an event loop that is gone (its coroutines can no longer run)."""
    for pool in pools.values():
        pool.finish()


class _Pool:
    """At most ``size`` autocommit connections to one database, each kept for the database's CONN_MAX_AGE.

    As Django's own connections: 0 closes a connection once its push is done,
    None keeps it for good, N seconds closes it once it is that old.
    """

    def __init__(self, alias, size):
        self.alias = alias
        self._idle = []
        self._opened_at = {}
        self._slots = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def connection(self):
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                yield connection
            except BaseException:
                # Broken, or left in an unknown state by a cancellation: never handed out again. An outage
                # that broke this connection broke the idle ones too: the next push opens a new one.
                self._discard(connection)
                for idle in self._idle:
                    self._discard(idle)
                self._idle = []
                raise
            if connection.closed or self._expired(connection):
                self._discard(connection)
            else:
                self._idle.append(connection)

    async def _connect(self):
        wrapper = connections[self.alias]
        parameters = {**wrapper.get_connection_params(), "cursor_factory": psycopg.AsyncCursor, "autocommit": True}
        with _as_django_errors:
            connection = await psycopg.AsyncConnection.connect(**parameters)
            role = wrapper.settings_dict["OPTIONS"].get("assume_role")
            if role:
                # As Django does on its own connections (OPTIONS["assume_role"]).
                await connection.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        self._opened_at[connection] = time.monotonic()
        return connection

    def _expired(self, connection):
        max_age = connections.settings[self.alias]["CONN_MAX_AGE"]
        return max_age is not None and time.monotonic() - self._opened_at[connection] >= max_age

    def _discard(self, connection):
        self._opened_at.pop(connection, None)
        connection.pgconn.finish()

    def finish(self):
        for connection in self._opened_at:
            connection.pgconn.finish()
        self._opened_at, self._idle = {}, []
