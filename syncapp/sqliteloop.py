"""A lone push to a known store on SQLite, committed on the event loop while the database thread is idle.

SQLite has no asynchronous driver, so every storage call goes to the database
thread (``syncapp.db``) and back: a trip that cost a batch-1 push about
0.17 ms of its 0.7 ms round trip on a 2-core machine, twice what the same trip
costs an idle event loop. The push a store sees most — one client extending
the head of a store this process knows — is one short transaction
(``storage.append_alone_sqlite``). This module runs it on the event loop, on
the database thread's own connection, lent while that thread has nothing to
do: the process keeps one connection (``syncapp.db`` says why), and the
push's commit is as durable as on the thread (``synchronous=FULL``) before
it returns.

When: a push waits for the end of the event loop's turn. If it is the turn's
only push, of at most ``storage.ALONE_MAX_EVENTS`` events, the thread is idle
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
import functools
import sqlite3
import time
import types
import weakref

from django.db import connections
from django.db.utils import DatabaseErrorWrapper

from . import db, metrics, storage

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
    asyncio.AbstractEventLoop, dict[str, list[tuple[storage.PendingAppend, storage._Location, asyncio.Future]]]
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
    """``pending`` committed as ``storage.Appended``, or None when it must go to the database thread.

    None also means nothing was written. A push that could not be committed here whatever the turn holds
    (more than one database thread, or its connection closed between calls: CONN_MAX_AGE 0) does not wait
    for the turn's end.
    """
    location = storage.known_location(pending.store_id)
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
    """``storage.append_alone_sqlite`` on the database thread's connection, if it is free; else None."""
    if len(pending.batch) > storage.ALONE_MAX_EVENTS or loop.time() < _thread_until.get(alias, 0.0):
        return None
    writer = storage.sqlite_writer_lock(alias)
    with db.lent_connection(alias) as driver:
        if driver is None or not writer.acquire(blocking=False):
            return None
        started = time.perf_counter()
        try:
            with _as_django_errors:
                appended = storage.append_alone_sqlite(
                    driver, location, pending, storage.now_iso(), wait_for_lock=False
                )
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
