"""Running blocking storage calls off the event loop.

Channels' ``database_sync_to_async`` runs every ORM call of a process in one
thread (``thread_sensitive=True``), so one slow transaction stalls every store
in the process. livesync runs storage calls on a small pool of its own instead
(``LIVESYNC["DATABASE_THREADS"]``): each thread keeps its own connection, so
pushes to different stores commit in parallel on PostgreSQL, while pushes to one
store are still serialized by the database (row lock), never by this pool.
"""

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections

from . import conf

_executor = None
_executor_lock = threading.Lock()


def _get_executor():
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=conf.get("DATABASE_THREADS"), thread_name_prefix="livesync-db"
                )
    return _executor


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
    return await asyncio.get_running_loop().run_in_executor(_get_executor(), call)
