"""A push to a known store on PostgreSQL, run on the event loop: one statement on an async connection.

Every other storage call goes through the database threads (``syncapp.storage.db``),
which costs each call a trip to a thread and a wake-up of the event loop on
the way back: on a batch-1 push that trip was a quarter of the event loop's
time. The push that a store sees most — one client extending the head of a
store this process already knows — is one self-committing statement
(``statements.alone_statement``), so it needs no transaction, no ORM and no
thread: it runs here, on psycopg's async connection, and its commit is
durable (``synchronous_commit``) before it returns, as on the threads.

Anything else (a store not yet known to this process, a stale parent, a
retry, a broken chain, a long batch, a reset in between) moved nothing, and
``append_alone`` returns None for the general path to decide. Errors are
Django's, as from a Django cursor, so the caller handles an outage the same
way whichever path met it.

Connections: opened with the database's Django settings, binding parameters
on the server: ``OPTIONS`` go to psycopg as Django hands them to its own
connections (``get_connection_params``: sslmode, ``options``, target_session_attrs…),
and ``assume_role`` is set as Django sets it. Options that only Django's
connections can honour — its connection pool (``pool``, a synchronous pool
that bounds the database's connections), a cursor class of the host's
(``cursor_factory``), a transaction isolation level (``isolation_level``: a
group is one transaction) — make this path step aside for that database
(``applies_to``), and its pushes run on Django's connections through the
database threads. Statements are prepared as the database's
``OPTIONS["prepare_threshold"]`` says (Django hands it to psycopg for its own
connections too): by default never, which any connection pooler accepts; a
threshold (psycopg's default is 5) spares PostgreSQL the parsing and planning
of a store's push statement once it ran that often, about a quarter of a
batch-1 push's time here. A connection that failed is dropped, and the next
push opens a new one.

Group commit: one statement or group runs at a time per database and event
loop. Pushes that arrive meanwhile wait, and go together once it is done (up
to GROUP_LIMIT in a group), as one query string bound on the client, which
PostgreSQL runs as one transaction: one round trip and one commit (one fsync)
for the group, where each push alone cost one of each, and the event loop's
share of a push (psycopg sending, waking up on the answer) is paid once per
group. None is acknowledged before that commit. Running up to four at a time,
as the database threads do, 1,000 pushes from 50 stores at once took about 255
commits, most of them of one push; one at a time, about 80, and PostgreSQL's
share of the CPU fell by a quarter. A group held up longer than
``STALLED_GROUP_SECONDS`` (a lock, a slow disk) lets the pushes behind it take
another connection, up to ``db.database_threads()`` at once: a push waiting
for its store's row holds up the pushes of its own group, as before, not those
that come after it.

An error on a connection that still works (one push's write refused, a lock
or statement timeout, a deadlock, a table moved into the store schema) rolls
back the statement or the whole group, and each of its pushes is then decided
on the general path, so one push's fault never fails another's. A broken
connection fails every push of the group as an outage: the commit may have
happened, and each push reads back what was stored.

What Django's instrumentation does not see: the statements run here (a push's
``WITH moved AS (UPDATE syncapp_store …) INSERT INTO "<schema>"."eventlog_…"``,
alone or several in one query string) are not Django cursor calls, so
``connection.execute_wrapper()`` wrappers, patches of Django's cursor classes
(Sentry, django-debug-toolbar), an instrumented ENGINE (django-prometheus) and
``connection_created`` receivers do not see them or these connections. The
wrappers are synchronous: running them would take the push back to a thread,
the trip this path exists to save. Every other livesync statement runs on
Django's connections.
"""

import asyncio
import collections
import contextlib
import functools
import math
import time
import types
import weakref
from dataclasses import dataclass

from django.db import DatabaseError, connections
from django.db.utils import DatabaseErrorWrapper
from django.utils import timezone

from .. import metrics
from . import db, statements, stores

try:
    # Django's PostgreSQL backend uses psycopg 3 whenever it is installed; psycopg2 has no async connection.
    import psycopg
except ImportError:
    psycopg = None  # type: ignore[assignment]

# event loop -> {alias: that loop's connections to that database}.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, "_Pool"]] = weakref.WeakKeyDictionary()

# psycopg's errors as Django's, as a Django cursor raises them (DatabaseErrorWrapper needs only the driver).
_as_django_errors = DatabaseErrorWrapper(types.SimpleNamespace(Database=psycopg, errors_occurred=False))


# OPTIONS only Django's own connections honour (see the module's docstring): with any of them set, pushes to the
# database run on Django's connections.
DJANGO_ONLY_OPTIONS = ("pool", "cursor_factory", "isolation_level")


@functools.cache
def applies_to(alias):
    """Whether pushes to stores in database ``alias`` may take this path: PostgreSQL through psycopg 3, with no
    option of DJANGO_ONLY_OPTIONS set.

    Cached: on the event loop each task would otherwise build a connection wrapper of its own to ask.
    """
    connection = connections[alias]
    options = connection.settings_dict["OPTIONS"]
    return (
        psycopg is not None
        and connection.vendor == "postgresql"
        and not any(options.get(name) for name in DJANGO_ONLY_OPTIONS)
    )


async def append_alone(pending):
    """``pending`` committed as ``statements.Appended``, or None when it must take the general path.

    None also means nothing was written: the statement moves the head and
    inserts the rows together, or neither.
    """
    location = stores.known_location(pending.store_id)
    if location is None or not applies_to(location.database):
        return None
    if pending.backend_id is not None and pending.backend_id != location.backend_id:
        return None
    created_at = statements.now_iso()
    statement = statements.alone_statement(location, pending, created_at, timezone.now())
    if statement is None:
        return None
    inserted = await _pool(location.database).inserted(statement, location.pk)
    return statements.Appended(created_at, location.backend_id) if inserted == len(pending.batch) else None


# connection -> the cursor its lone statements run on, made once: a cursor made for each push was 6% of a
# batch-1 push's server CPU here. A connection that met an error is dropped, and its cursor with it.
_cursors: "weakref.WeakKeyDictionary[psycopg.AsyncConnection, psycopg.AsyncCursor]" = weakref.WeakKeyDictionary()


async def _execute_together(connection, statements):
    """The rows each of ``statements`` inserted, run in one transaction: one alone as it is, several joined
    into one query string bound on the client (PostgreSQL runs a query string of several statements as one
    transaction, and answers each)."""
    if len(statements) == 1:
        cursor = _cursors.get(connection)
        if cursor is None:
            cursor = _cursors[connection] = connection.cursor()
        await cursor.execute(statements[0].sql, statements[0].parameters)
        return [cursor.rowcount]
    cursor = psycopg.AsyncClientCursor(connection)
    # Bound one statement at a time, where psycopg caches the parsing of each statement's text (it would parse
    # the joined text anew each time); the joined text, without parameters, is then sent as it is.
    await cursor.execute("; ".join(cursor.mogrify(statement.sql, statement.parameters) for statement in statements))
    inserted = [cursor.rowcount]
    while cursor.nextset():
        inserted.append(cursor.rowcount)
    return inserted


def _usable(connection):
    """Whether ``connection`` is open and out of any transaction: an error on it was the statement's alone."""
    return not connection.closed and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# Running groups (the event loop keeps only weak references to tasks).
_groups: set[asyncio.Task[None]] = set()


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


# Statements one group carries at most.
GROUP_LIMIT = 50
# How long a statement or group may run before the pushes waiting behind it take another connection: far
# longer than a commit takes.
STALLED_GROUP_SECONDS = 0.05


@dataclass
class _Waiting:
    """A push waiting for a connection: its statement, its store's row id (the group's lock order), its answer."""

    statement: statements.AloneStatement
    store_pk: int
    answer: asyncio.Future


class _Pool:
    """At most ``size`` autocommit connections to one database, each kept for the database's CONN_MAX_AGE, and
    the pushes waiting for one (see the module's docstring).

    As Django's own connections: 0 closes a connection once its statement is done,
    None keeps it for good, N seconds closes it once it is that old.
    """

    def __init__(self, alias, size):
        self.alias = alias
        self._size = size
        # When each statement or group now running started (event-loop time).
        self._running_since = []
        self._waiting = collections.deque()
        self._stall_check = None
        self._idle = []
        self._opened_at = {}

    async def inserted(self, statement, store_pk):
        """Run a push's ``statement``: the rows it inserted, or None when it or its group failed without an
        outage (nothing of it was written: the general path decides it)."""
        if not self._running_since and not self._waiting:
            started = self._started()
            try:
                async with self._connection() as connection:
                    try:
                        with _as_django_errors:
                            (inserted,) = await _execute_together(connection, [statement])
                    except DatabaseError:
                        if not _usable(connection):
                            raise
                        return None
                if inserted:
                    metrics.COMMIT_GROUP_PUSHES.observe(1)
                return inserted
            finally:
                self._running_since.remove(started)
                self._next_group()
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(statement, store_pk, answer))
        self._next_group()
        return await answer

    def _started(self):
        started = asyncio.get_running_loop().time()
        self._running_since.append(started)
        return started

    def _next_group(self):
        """Start the pushes waiting now, GROUP_LIMIT to a group, while nothing runs that started less than
        STALLED_GROUP_SECONDS ago (and a connection is left); then look again when the youngest has run that
        long."""
        loop = asyncio.get_running_loop()
        while self._waiting and len(self._running_since) < self._size:
            stalled_at = max(self._running_since, default=-math.inf) + STALLED_GROUP_SECONDS
            if stalled_at > loop.time():
                if self._stall_check is None:
                    self._stall_check = loop.call_at(stalled_at, self._look_again)
                return
            group = [self._waiting.popleft() for _ in range(min(GROUP_LIMIT, len(self._waiting)))]
            started = self._started()
            task = asyncio.ensure_future(self._run_group(group))
            _groups.add(task)
            # A callback, not a finally: a task cancelled before its first step never runs its body.
            task.add_done_callback(functools.partial(self._group_done, group, started))

    def _look_again(self):
        self._stall_check = None
        self._next_group()

    def _group_done(self, group, started, task):
        _groups.discard(task)
        self._running_since.remove(started)
        failure = asyncio.CancelledError() if task.cancelled() else task.exception()
        for waiting in group:
            if not waiting.answer.done():
                waiting.answer.set_exception(failure or RuntimeError("a group of pushes ended without answering"))
        self._next_group()

    async def _run_group(self, group):
        # Store rows are locked in id order, as the general path does: groups committing at once in several
        # processes never wait for each other in a cycle.
        group = sorted((waiting for waiting in group if not waiting.answer.done()), key=lambda w: w.store_pk)
        if not group:
            return
        try:
            async with self._connection() as connection:
                try:
                    with _as_django_errors:
                        outcomes = await _execute_together(connection, [waiting.statement for waiting in group])
                except DatabaseError:
                    if not _usable(connection):
                        raise
                    # The connection answered and rolled the group back (one push's write failed, timed out
                    # on a lock, was chosen as a deadlock's victim): nothing was written, and each push is
                    # decided alone on the general path.
                    outcomes = [None] * len(group)
        except DatabaseError as outage:
            # The connection broke: the commit may have happened, and each push reads back what was stored
            # (eventlog.commit).
            outcomes = [outage] * len(group)
        else:
            committed = sum(1 for inserted in outcomes if inserted)
            if committed:
                metrics.COMMIT_GROUP_PUSHES.observe(committed)
        for waiting, outcome in zip(group, outcomes, strict=True):
            if waiting.answer.done():
                continue
            if isinstance(outcome, BaseException):
                waiting.answer.set_exception(outcome)
            else:
                waiting.answer.set_result(outcome)

    @contextlib.asynccontextmanager
    async def _connection(self):
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
        """Whether ``connection`` outlived CONN_MAX_AGE, or outlived its pool (``finish`` while it ran)."""
        opened_at = self._opened_at.get(connection)
        if opened_at is None:
            return True
        max_age = connections.settings[self.alias]["CONN_MAX_AGE"]
        return max_age is not None and time.monotonic() - opened_at >= max_age

    def _discard(self, connection):
        self._opened_at.pop(connection, None)
        connection.pgconn.finish()

    def finish(self):
        if self._stall_check is not None:
            self._stall_check.cancel()
            self._stall_check = None
        for connection in self._opened_at:
            connection.pgconn.finish()
        self._opened_at, self._idle = {}, []
