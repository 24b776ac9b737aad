"""Per-store eventlog tables: the storage the sync core, Django code in a store and the admin use.

The rest of livesync calls storage through the names below (``storage.append``,
``storage.read_page``, …); the modules behind them each do one job:

- ``stores``: where each store's table is, creating stores, reset and delete;
  ``placement``: which database holds a store; ``lru``: what a process keeps per store.
- ``tables``: table names and the run-time models; ``schema``: the PostgreSQL schema they live in;
  ``spares``: empty tables made ahead of time; ``moving``: tables of earlier versions moved into the schema.
- ``statements``: the outcomes and statements every append path shares; ``appends``: the chain check and
  each commit path on the database threads; ``postgres`` and ``sqlite``: each backend's path on the event loop.
- ``reads``: pages of events and heads; ``transfer``: export, import and Cloudflare D1 files.
- ``backends``: what differs between the database backends; ``db``: the database thread pool that runs
  these blocking calls off the event loop.

Everything here is synchronous and blocking, except ``db``, ``postgres`` and the
event-loop half of ``sqlite``. Nothing here knows about WebSockets or frames.
"""

from .appends import append, append_many, read_back
from .backends import writes_one_at_a_time
from .moving import MOVE_LOCK_TIMEOUT, move_table, tables_to_move
from .reads import StoredEvent, head, heads, read_page
from .schema import create_store_schema, store_schema
from .spares import refill_spares, spares_wanted
from .statements import Appended, BackendIdMismatch, BrokenChain, ParentMismatch, PendingAppend, PushRejected, now_iso
from .stores import database_of, delete, get_store, note_client, open_store, ping, reset, store_exists
from .tables import events_of, sanitize

__all__ = [
    "MOVE_LOCK_TIMEOUT",
    "Appended",
    "BackendIdMismatch",
    "BrokenChain",
    "ParentMismatch",
    "PendingAppend",
    "PushRejected",
    "StoredEvent",
    "append",
    "append_many",
    "create_store_schema",
    "database_of",
    "delete",
    "events_of",
    "get_store",
    "head",
    "heads",
    "move_table",
    "note_client",
    "now_iso",
    "open_store",
    "ping",
    "read_back",
    "read_page",
    "refill_spares",
    "reset",
    "sanitize",
    "spares_wanted",
    "store_exists",
    "store_schema",
    "tables_to_move",
    "writes_one_at_a_time",
]
