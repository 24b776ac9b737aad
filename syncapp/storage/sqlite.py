"""A lone push to a known store on SQLite: one transaction on sqlite3's own connection (``append_alone_sqlite``),
on a database thread or, while that thread is idle, on the event loop.

SQLite has no asynchronous driver, so every storage call goes to the database
thread (``syncapp.storage.db``) and back: a trip that cost a batch-1 push about
0.17 ms of its 0.7 ms round trip on a 2-core machine, twice what the same trip
costs an idle event loop. The push a store sees most — one client extending
the head of a store this process knows — is one short transaction
(``append_alone_sqlite``). This module runs it on the event loop, on
the database thread's own connection, lent while that thread has nothing to
do: the process keeps one connection (``syncapp.storage.db`` says why), and the
push's commit is as durable as on the thread (``synchronous=FULL``) before
it returns.

When: a push waits for the end of the event loop's turn. If it is the turn's
only push, of at most ``statements.ALONE_MAX_EVENTS`` events, the thread is idle
(no call running; it starts none while its connection is lent), no
other thread of the process is writing, and commits here have been quick, it
is committed here; otherwise every push of the turn goes to the thread, where
pushes that arrive together are committed together (``db.Gathered``), so
under load nothing changes. Anything the transaction cannot decide alone (a
stale parent, a retry, a broken chain, a reset meanwhile) moved nothing, and
takes the general path.

The event loop waits for the commit, ``fsync`` included (40-50 µs on this
machine's disk). It never waits for a lock: the transaction runs without a
busy timeout, and a lock held by another connection rolls it back and sends
the push to the thread, which waits for it as before. Commits here that
took longer than SLOW_COMMIT_SECONDS on average (a slow disk, stalls one
after another) send the pushes of the next SLOW_COMMIT_BACKOFF_SECONDS to the
thread. A single stall does not: the WAL checkpoint that a commit runs now
and then took 16 ms here, and sent a whole bench run to the thread when it
counted in full.

Errors are Django's, as from a Django cursor: the caller reads back what an
error may have left stored, whichever path met it.
"""

import asyncio
import contextlib
import functools
import sqlite3
import time
import types
import weakref
from datetime import UTC, datetime

from django.db import connections
from django.db.utils import DatabaseErrorWrapper

from .. import metrics
from . import backends, db, statements, stores
from .backends import _operations
from .statements import Appended, _insert_sql, _move_head_parameters, _move_head_sql, _rows, chain_break


def _append_alone_sqlite(location, pending, created_at):
    """A lone push that extends the head, on SQLite: ``append_alone_sqlite`` on this thread's connection."""
    connection = connections[location.database]
    connection.ensure_connection()
    driver = connection.connection
    try:
        with connection.wrap_database_errors:
            return append_alone_sqlite(driver, location, pending, created_at)
    finally:
        if driver.in_transaction:
            # Neither committed nor rolled back: a connection kept with that transaction would read its own
            # uncommitted rows back as stored.
            connection.close()


def append_alone_sqlite(driver, location, pending, created_at, wait_for_lock=True):
    """A lone push that extends the head, on SQLite: the compare-and-set and the insert in one transaction run
    on ``driver`` (sqlite3's own connection); None, with nothing written, for anything else, and, unless
    ``wait_for_lock``, when a lock held by another connection stood in its way.

    Django's ``atomic()`` and cursor wrappers are the general path's, where a
    push may meet a retry or a stale parent; for the push a store sees most,
    their Python cost the database thread more than the statements did. The
    thread holds the GIL for all of it while the event loop waits for its turn:
    a batch-1 push through them took about 0.27 ms more, end to end, than the
    same statements run here. The transaction takes the write lock at once
    (``BEGIN IMMEDIATE``) and commits with the connection's own settings
    (``synchronous=FULL``), so the push is durable when this returns, as on the
    general path. Whatever fails, the transaction is rolled back before this
    raises; a caller finding ``driver.in_transaction`` still true afterwards
    (the rollback failed too) must not use the connection again.

    Without ``wait_for_lock`` the connection's busy timeout is set aside for
    the transaction: in WAL mode only ``BEGIN`` can meet another writer's lock,
    in rollback-journal mode ``COMMIT`` can meet readers too, and either way
    the push is rolled back and None returned at once. ``syncapp.storage.sqlite``
    runs it so on the event loop.
    """
    batch = pending.batch
    if chain_break(batch) is not None:
        return None
    alias = location.database
    rows = _rows(pending, created_at)
    now = _operations(alias).adapt_datetimefield_value(datetime.now(UTC))
    with _busy_timeout_set_aside(driver, not wait_for_lock):
        try:
            driver.execute("BEGIN IMMEDIATE")
            moved = driver.execute(
                _sqlite_placeholders(_move_head_sql(alias, pending.generation)),
                _move_head_parameters(location, pending, batch[0].parentSeqNum, now),
            ).rowcount
            if moved != 1:
                driver.execute("ROLLBACK")
                return None
            driver.executemany(_sqlite_placeholders(_insert_sql(_operations(alias), location.db_table)), rows)
            driver.execute("COMMIT")
        except sqlite3.OperationalError as error:
            _roll_back(driver)
            if not wait_for_lock and error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise
        except BaseException:
            _roll_back(driver)
            raise
    return Appended(created_at, location.backend_id)


@contextlib.contextmanager
def _busy_timeout_set_aside(driver, set_aside):
    """Within the block, ``driver`` meets a lock with an error at once instead of waiting (when ``set_aside``)."""
    if not set_aside:
        yield
        return
    (busy_timeout,) = driver.execute("PRAGMA busy_timeout").fetchone()
    driver.execute("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")


def _roll_back(driver):
    """End the transaction a failed statement left open, if it did (SQLite may have ended it already)."""
    if driver.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            driver.execute("ROLLBACK")


def _sqlite_placeholders(sql):
    """``sql`` with the driver's placeholders, as Django's SQLite cursor converts it (``%s`` -> ``?``); the
    names and values in livesync's statements hold no ``%``."""
    return sql.replace("%s", "?")


# Commits on the event loop that take longer than this on average (a moving average over about the last
# ten) send the pushes of the next SLOW_COMMIT_BACKOFF_SECONDS to the database thread, where the event loop
# does not wait.
SLOW_COMMIT_SECONDS = 0.001
# Short: the commits of a database file whose WAL is still growing are slower (0.5-1.5 ms here, against 0.3 ms
# once it is reused), and a pause of 10 s sent whole bench runs on new files to the thread.
SLOW_COMMIT_BACKOFF_SECONDS = 1.0
# The weight of the latest commit in the moving average.
SLOW_COMMIT_WEIGHT = 0.1
# What one commit counts for in the average at most: a single stall says little of the next commits (a WAL
# checkpoint now and then), three in a row or a disk slow on most commits send the pushes to the thread.
COMMIT_SECONDS_COUNTED_AT_MOST = 0.004

# sqlite3's errors as Django's, as a Django cursor raises them (DatabaseErrorWrapper needs only the driver).
_as_django_errors = DatabaseErrorWrapper(types.SimpleNamespace(Database=sqlite3, errors_occurred=False))

# event loop -> {alias: the pushes of the loop's current turn, as (pending, location, future)}.
_turns: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, list[tuple[statements.PendingAppend, stores._Location, asyncio.Future]]]
] = weakref.WeakKeyDictionary()
# alias -> the event loop's time until which its pushes go to the database thread.
_thread_until: dict[str, float] = {}
# alias -> the moving average of its commits' durations on the event loop, in seconds.
_commit_seconds: dict[str, float] = {}


@functools.cache
def applies_to(alias):
    """Whether pushes to stores in database ``alias`` may take this path.

    Cached: on the event loop each task would otherwise build a connection wrapper of its own to ask.
    """
    return connections[alias].vendor == "sqlite"


async def append_alone(pending):
    """``pending`` committed as ``statements.Appended``, or None when it must go to the database thread.

    None also means nothing was written. A push that could not be committed here whatever the turn holds
    (more than one database thread, or its connection closed between calls: CONN_MAX_AGE 0) does not wait
    for the turn's end.
    """
    location = stores.known_location(pending.store_id)
    if location is None or not applies_to(location.database) or not db.may_lend(location.database):
        return None
    if pending.backend_id is not None and pending.backend_id != location.backend_id:
        return None
    loop = asyncio.get_running_loop()
    turns = _turns.setdefault(loop, {})
    pushes = turns.get(location.database)
    if pushes is None:
        pushes = turns[location.database] = []
        loop.call_soon(_end_of_turn, loop, location.database)
    future = loop.create_future()
    pushes.append((pending, location, future))
    return await future


def _end_of_turn(loop, alias):
    """Commit the turn's push here if it was alone and the database is free; tell the others to go to the
    thread."""
    pushes = _turns[loop].pop(alias)
    appended = None
    if len(pushes) == 1:
        pending, location, future = pushes[0]
        if future.cancelled():
            return
        try:
            appended = _commit_here(loop, alias, pending, location)
        except Exception as error:  # noqa: BLE001 - raised in the push's own task, which reads back what was stored
            future.set_exception(error)
            return
    for _, _, future in pushes:
        if not future.done():
            future.set_result(appended)


def _commit_here(loop, alias, pending, location):
    """``append_alone_sqlite`` on the database thread's connection, if it is free; else None."""
    if len(pending.batch) > statements.ALONE_MAX_EVENTS or loop.time() < _thread_until.get(alias, 0.0):
        return None
    writer = backends.sqlite_writer_lock(alias)
    with db.lent_connection(alias) as driver:
        if driver is None or not writer.acquire(blocking=False):
            return None
        started = time.perf_counter()
        try:
            with _as_django_errors:
                appended = append_alone_sqlite(driver, location, pending, statements.now_iso(), wait_for_lock=False)
        finally:
            writer.release()
            _note_commit_time(loop, alias, time.perf_counter() - started)
    if appended is not None:
        metrics.COMMIT_GROUP_PUSHES.observe(1)
    return appended


def _note_commit_time(loop, alias, seconds):
    counted = min(seconds, COMMIT_SECONDS_COUNTED_AT_MOST)
    average = (1 - SLOW_COMMIT_WEIGHT) * _commit_seconds.get(alias, 0.0) + SLOW_COMMIT_WEIGHT * counted
    if average > SLOW_COMMIT_SECONDS:
        _thread_until[alias] = loop.time() + SLOW_COMMIT_BACKOFF_SECONDS
        # After the pause the disk is measured afresh: a slow one sends the pushes back within a few commits.
        average = 0.0
    _commit_seconds[alias] = average
