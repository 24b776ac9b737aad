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
thread is idle (``idle_connection``, ``syncapp.sqliteloop``).
"""

import asyncio
import functools
import logging
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections

from . import conf, metrics

logger = logging.getLogger("syncapp")

_executor = None
_executor_lock = threading.Lock()


def _get_executor():
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=database_threads(), thread_name_prefix="livesync-db")
    return _executor


# alias -> the connection (Django's wrapper) of the pool's thread, when the pool has one thread.
_thread_connections = {}
# Pool calls submitted and not finished: while there are any, the pool's thread may be using its connections.
_calls_unfinished = 0
_calls_lock = threading.Lock()


def _note_connections():
    # Run on the pool's thread after each call: the store databases' connections it used last (Django's are
    # per thread), which idle_connection lends while the thread has nothing to do.
    if database_threads() == 1:
        for alias in conf.store_databases():
            _thread_connections[alias] = connections[alias]


def idle_connection(alias):
    """The pool's thread's own driver connection to ``alias`` while that thread has nothing to do; else None.

    For a caller on the event loop that is done with it before it returns
    (before any other pool call can be made), and leaves it as it found it:
    open, in autocommit, outside any transaction. None when the pool has more
    than one thread, a call is running or waiting, or the thread's connection
    is not open or is in a transaction.
    """
    with _calls_lock:
        if _calls_unfinished:
            return None
    wrapper = _thread_connections.get(alias)
    if wrapper is None:
        return None
    driver = wrapper.connection
    if driver is None or wrapper.in_atomic_block or not wrapper.autocommit or driver.in_transaction:
        return None
    return driver


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
    global _calls_unfinished
    waiting = _Waiting()

    def taken():
        waiting.over()
        try:
            return call()
        finally:
            _note_connections()

    with _calls_lock:
        _calls_unfinished += 1
    # What run_in_executor does, with the call counted until it has finished (or was cancelled unstarted),
    # before the event loop hears of it.
    work = _get_executor().submit(taken)
    work.add_done_callback(_call_finished)
    future = asyncio.wrap_future(work, loop=loop)
    future.add_done_callback(waiting.over)
    return future


def _call_finished(_work):
    global _calls_unfinished
    with _calls_lock:
        _calls_unfinished -= 1


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
        for (_, future), outcome in zip(calls, outcomes):
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
_background_tasks = set()
