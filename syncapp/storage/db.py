"""Running blocking storage calls off the event loop.

Channels' ``database_sync_to_async`` runs every ORM call of a process in one
thread (``thread_sensitive=True``), so one slow transaction stalls every store
in the process. livesync runs storage calls on a small pool of its own instead
(``LIVESYNC["DATABASE_THREADS"]``): each thread keeps its own connection, so
pushes to different stores commit in parallel on PostgreSQL, while pushes to one
store are still serialized by the database (row lock), never by this pool.

On SQLite the pool has one thread unless configured otherwise. SQLite takes one
writer at a time anyway, and every new store's ``CREATE TABLE`` makes each
*other* connection re-read the whole schema before its next statement, which
with one table per store grows with the number of stores (190 ms per re-read
at 10,000 tables): with one connection there is nothing to re-read. That
thread's connection is lent to the event loop for a lone push while the
thread is idle (``lent_connection``, ``syncapp.storage.sqlite``).
"""

import asyncio
import contextlib
import functools
import logging
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from django.db import close_old_connections, connections

from .. import conf, metrics

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("syncapp")

_executor = None
_executor_lock = threading.Lock()


def _get_executor():
    global _executor, _lends_connections
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                threads = database_threads()
                _lends_connections = threads == 1
                _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="livesync-db")
    return _executor


# Whether the pool has one thread, whose connections lent_connection may lend (set with the pool).
_lends_connections = False
# alias -> the connection (Django's wrapper) of the pool's thread, when the pool has one thread.
_thread_connections: dict[str, "BaseDatabaseWrapper"] = {}
# Held by the pool's one thread for each call, and by whoever borrows its connections (lent_connection):
# a call submitted from any thread or event loop meanwhile waits for the connection to come back.
_lending_lock = threading.Lock()


def _note_connections():
    # Run on the pool's thread after each call: the store databases' connections it used last (Django's are
    # per thread), which lent_connection lends while the thread has nothing to do.
    if _lends_connections:
        for alias in conf.store_databases():
            _thread_connections[alias] = connections[alias]


def _close_abandoned_transactions():
    # A lent connection left in a transaction that could be neither committed nor rolled back is closed
    # before its thread uses it again: it would read its own uncommitted rows back as stored.
    for wrapper in _thread_connections.values():
        driver = wrapper.connection
        if driver is not None and not wrapper.in_atomic_block and getattr(driver, "in_transaction", False):
            wrapper.close()


def may_lend(alias):
    """Whether ``lent_connection`` could lend ``alias``'s connection at all: the pool has one thread and its
    connection is open (it is closed between calls when CONN_MAX_AGE is 0). A hint, taken without the lock."""
    wrapper = _thread_connections.get(alias) if _lends_connections else None
    return wrapper is not None and wrapper.connection is not None


@contextlib.contextmanager
def lent_connection(alias):
    """The pool's thread's own driver connection to ``alias``, lent for the block while that thread has
    nothing to do; None when it cannot be lent.

    For code on the event loop that leaves it as it found it: open, in
    autocommit, outside any transaction. The pool's thread starts no call
    while it is lent. None when the pool has more than one thread, a call is
    running, or the thread's connection is not open or is in a transaction.
    """
    if not _lends_connections or not _lending_lock.acquire(blocking=False):
        yield None
        return
    try:
        wrapper = _thread_connections.get(alias)
        driver = None if wrapper is None else wrapper.connection
        if driver is None or wrapper.in_atomic_block or not wrapper.autocommit or driver.in_transaction:
            driver = None
        yield driver
    finally:
        _lending_lock.release()


# Threads when DATABASE_THREADS is None and the database is not SQLite.
DEFAULT_THREADS = 4


def database_threads():
    """The pool's size: ``DATABASE_THREADS``, or when that is None one when stores live in SQLite and
    DEFAULT_THREADS elsewhere."""
    configured = conf.get("DATABASE_THREADS")
    if configured is not None:
        return configured
    return 1 if _on_sqlite() else DEFAULT_THREADS


@functools.cache
def _on_sqlite():
    # Cached: asked on the event loop, where each task would otherwise build a connection wrapper of its own.
    return any(connections[alias].vendor == "sqlite" for alias in conf.store_databases())


def _with_fresh_connection(func, args, kwargs):
    # As database_sync_to_async does: drop connections that errored or outlived
    # CONN_MAX_AGE, so a database that went away and came back is reconnected.
    close_old_connections()
    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()


async def run(func, *args, **kwargs):
    """Run blocking ``func(*args, **kwargs)`` on the database pool and return its result.

    A plain ``run_in_executor``: asgiref's SyncToAsync adds context propagation
    this code does not need, at a cost measurable on every push.
    """
    call = functools.partial(_with_fresh_connection, func, args, kwargs)
    return await _submit(asyncio.get_running_loop(), call)


class _Waiting:
    """One call counted in ``livesync_database_waiting_calls`` until a thread takes it or it is cancelled,
    whichever comes first (a cancelled call that never started must not stay counted)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._over = False
        metrics.DATABASE_WAITING.inc()

    def over(self, *_):
        with self._lock:
            if self._over:
                return
            self._over = True
        metrics.DATABASE_WAITING.dec()


def _submit(loop, call):
    waiting = _Waiting()

    def taken():
        waiting.over()
        with _lending_lock if _lends_connections else contextlib.nullcontext():
            _close_abandoned_transactions()
            try:
                return call()
            finally:
                _note_connections()

    future = loop.run_in_executor(_get_executor(), taken)
    future.add_done_callback(waiting.over)
    return future


class Gathered:
    """Calls of a blocking ``func_many(items)`` on the database pool, gathered: one pool call serves all that wait.

    ``await gathered(item)`` returns the outcome ``func_many`` gave its item (or
    raises it, when it is an exception). A call that finds fewer than
    ``concurrency()`` pool calls running starts one at once, so a lone call
    waits for nobody; calls made while they all run go together in the next
    one. That is group commit: N waiting pushes cost one commit instead of N.
    """

    def __init__(self, func_many, concurrency=lambda: 1):
        self.func_many = func_many
        self.concurrency = concurrency
        # Futures belong to one event loop (tests run several): a queue per loop.
        self._queues = weakref.WeakKeyDictionary()

    async def __call__(self, item):
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future = loop.create_future()
        queue.waiting.append((item, future))
        if queue.running < self.concurrency():
            self._start(loop, queue)
        return await future

    def _start(self, loop, queue):
        calls, queue.waiting = queue.waiting, []
        queue.running += 1
        call = functools.partial(_with_fresh_connection, self.func_many, ([item for item, _ in calls],), {})
        done = _submit(loop, call)
        done.add_done_callback(functools.partial(self._finished, loop, queue, calls))

    def _finished(self, loop, queue, calls, done):
        queue.running -= 1
        failure = asyncio.CancelledError() if done.cancelled() else done.exception()
        outcomes = [failure] * len(calls) if failure is not None else done.result()
        for (_, future), outcome in zip(calls, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if queue.waiting and queue.running < self.concurrency():
            self._start(loop, queue)


class _Queue:
    def __init__(self):
        self.waiting = []
        self.running = 0


class Background:
    """A blocking ``func()`` run on the database pool in the background, one run at a time per event loop.

    ``request()`` starts a run unless one is going on; requests made meanwhile
    are served by one more run after it, and so is a run whose ``func()``
    returned True (more to do). Upkeep (such as making spare tables) then never
    takes more than one pool thread from the pushes, however often it is asked
    for, and gives it back between runs. A run's failure is logged and ends the
    runs; the next request starts them again.

    With ``quiet_seconds``, the first run of a series starts only once that
    long has passed without a request, or ``longest_wait_seconds`` after the
    request that started the series if requests never pause; the runs after it
    follow at once until nothing is left to do. Upkeep that a burst of work
    asks for waits for the burst to end instead of competing with it for the
    database, and under steady load it is done in full at least that often.
    """

    def __init__(self, func, quiet_seconds=0.0, longest_wait_seconds=0.0):
        self.func = func
        self.quiet_seconds = quiet_seconds
        self.longest_wait_seconds = longest_wait_seconds
        # Per event loop (tests run several): whether runs are going on, whether another was asked for, and
        # when the last request came.
        self._states = weakref.WeakKeyDictionary()

    def request(self):
        loop = asyncio.get_running_loop()
        state = self._states.setdefault(loop, {"running": False, "again": False, "requested_at": 0.0})
        state["requested_at"] = loop.time()
        if state["running"]:
            state["again"] = True
            return
        state["running"] = True
        task = loop.create_task(self._runs(loop, state))
        _background_tasks.add(task)
        task.add_done_callback(_background_tasks.discard)

    async def _runs(self, loop, state):
        try:
            await self._settle(loop, state)
            while True:
                state["again"] = False
                try:
                    more = await run(self.func)
                except Exception:  # noqa: BLE001 - upkeep; what it failed to do is asked for again later
                    logger.warning("background database work failed: %s", self.func.__qualname__, exc_info=True)
                    more = False
                if not (more or state["again"]):
                    return
        finally:
            state["running"] = False

    async def _settle(self, loop, state):
        """Wait until requests have paused for ``quiet_seconds``, or for ``longest_wait_seconds`` at most."""
        deadline = loop.time() + self.longest_wait_seconds
        while True:
            now = loop.time()
            wait = min(state["requested_at"] + self.quiet_seconds, deadline) - now
            if wait <= 0:
                return
            await asyncio.sleep(wait)


# Running Background tasks (the event loop keeps only weak references to tasks).
_background_tasks: set[asyncio.Task[None]] = set()
