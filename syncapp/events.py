"""Django code as a participant in a store: commit events from Python, and read a store's log.

``commit`` appends events at the store's head with the chain rules of a
client push (seqNums assigned at the head, the compare-and-set retried when
a client pushed in between, never a fork) and announces them to every
connected client of both generations exactly as a push is announced.

Called inside ``atomic(store_id)``, a transaction on the store's own
database, the events are part of the caller's transaction: stored when it
commits, announced (and ``events_committed`` sent) only then, and neither if
it rolls back. That is the outbox pattern with no outbox: a webhook's model
changes in that database and the events that tell the clients about them
commit together or not at all. While the caller's transaction is open, the
store's row stays locked, and client pushes to that store wait for it.

With stores spread over several databases (``STORE_DATABASES``), a plain
``transaction.atomic()`` is on the default database, which holds only some
of the stores: a commit to a store elsewhere would not be part of it, and
would reach the clients before the caller's transaction had decided. So a
commit inside a transaction of another database, while none is open on the
store's, raises CommitOutsideStoreTransaction rather than pretend; a caller
that wants the events committed at once regardless says ``independent=True``.

``args`` are the events' *encoded* JSON, as the client schema's encoded side
expects them: a ``Schema.Date`` is an ISO 8601 string (``js_date``), a
``Schema.DateFromNumber`` milliseconds since the epoch, a ``Schema.Boolean``
a JSON boolean. Values JSON cannot hold (datetimes, Decimals, NaN) are refused
rather than guessed at.
"""

import contextlib
import functools
import json
import secrets
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from django.db import connections, transaction
from django.db.transaction import TransactionManagementError

from . import conf, signals, storage
from .core import eventlog
from .fanout import handover
from .protocol import wire
from .server import handshake
from .storage import db, placement

# Who the events of the Python API come from, as the clients see them (``clientId`` / ``sessionId``).
SERVER_CLIENT_ID = "livesync-server"
SERVER_SESSION_ID = "server"
# Times the head may move under a commit (clients pushing in between) before it gives up.
COMMIT_ATTEMPTS = 50
# Events per read while ``read`` walks a log.
READ_EVENTS = 1000


class CommitRefused(ValueError):
    """Events, or a store, that a commit cannot take; nothing was written."""


class CommitConflict(RuntimeError):
    """The store's head kept moving for COMMIT_ATTEMPTS attempts; nothing was written."""


class CommitOutsideStoreTransaction(TransactionManagementError):
    """A commit inside a transaction of another database than the store's, which it could not be part of;
    nothing was written. A TransactionManagementError, as Django raises for a transaction it cannot honour."""


def js_date(moment: datetime) -> str:
    """A datetime as JavaScript's ``toISOString`` writes it, the encoded form of ``Schema.Date``."""
    if moment.tzinfo is None:
        raise CommitRefused("a naive datetime has no single instant: give it a timezone")
    utc = moment.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def atomic(store_id: str) -> Iterator[None]:
    """``transaction.atomic`` on the database that holds ``store_id``, as a context manager or a decorator.

    Commits to the store inside it are part of its transaction wherever the
    store lives. A store not created yet is created in the database it is
    bound for (``placement``), inside the block: a block that rolls back
    leaves no store behind. The database is looked up on entering, not when
    a decorator is applied.
    """
    _check_store_id(store_id)
    with transaction.atomic(using=_database_for(store_id)):
        yield


def commit(
    store_id: str,
    events: Iterable[tuple[str, object]],
    client_id: str = SERVER_CLIENT_ID,
    session_id: str = SERVER_SESSION_ID,
    *,
    independent: bool = False,
) -> list[int]:
    """Append ``events`` (``(name, args)`` pairs) at the store's head; return their seqNums.

    Inside a transaction on the store's database (``atomic(store_id)``) they
    are stored in that transaction and announced after it commits; outside
    any transaction, at once. Inside a transaction of another database only,
    CommitOutsideStoreTransaction, unless ``independent``: then at once, in a
    transaction of their own, whatever becomes of the caller's (inside a
    transaction on the store's database, ``independent`` changes nothing: it
    cannot take the events out of it). Raises CommitRefused for unusable
    input (nothing written) and CommitConflict.
    """
    if not independent:
        _refuse_other_databases_transaction(store_id)
    pending, seq_nums = _append_at_head(store_id, events, client_id, session_id)
    announce = functools.partial(_announce_blocking, store_id, pending)
    transaction.on_commit(announce, using=storage.database_of(store_id))
    return seq_nums


async def acommit(
    store_id: str,
    events: Iterable[tuple[str, object]],
    client_id: str = SERVER_CLIENT_ID,
    session_id: str = SERVER_SESSION_ID,
) -> list[int]:
    """``commit`` from async code, in a transaction of its own (Django's transactions do not span awaits)."""
    pending, seq_nums = await db.run(_append_at_head, store_id, events, client_id, session_id)
    await eventlog.announce(store_id, pending)
    await eventlog.tell_receivers(store_id, pending, signals.PYTHON)
    return seq_nums


def read(store_id: str, after: int = 0) -> Iterator[storage.StoredEvent]:
    """The store's events after seqNum ``after``, oldest first, as ``storage.StoredEvent`` (``args`` as JSON
    text), read a page at a time up to the head as it is when each page is read."""
    while True:
        page = storage.read_page(store_id, after, READ_EVENTS)
        yield from page.events
        if not page.events or page.remaining == 0:
            return
        after = page.events[-1].seq_num


def _announce_blocking(store_id: str, announcement: eventlog.Announcement) -> None:
    # Runs once the caller's transaction committed: that is when the events were committed.
    announcement.committed_at = time.time()
    async_to_sync(eventlog.announce)(store_id, announcement)
    if signals.has_receivers():
        stored = signals.stored_events(announcement.batch, announcement.appended.created_at, wire.args_text)
        signals.send(store_id, stored, signals.PYTHON)


def _append_at_head(
    store_id: str, events: Iterable[tuple[str, object]], client_id: str, session_id: str
) -> tuple[eventlog.Announcement, list[int]]:
    """Append ``events`` at the head, retrying when the head moved: ``(Announcement, seqNums)``."""
    _check(store_id, client_id, session_id)
    batch = [
        wire.Event(name=name, args=args, seqNum=0, parentSeqNum=0, clientId=client_id, sessionId=session_id)
        for name, args in _encoded(events)
    ]
    try:
        # A client push's own rule for what every backend can store (no NUL in the text fields).
        wire.prepare_batch(batch)
    except wire.InvalidBatch as invalid:
        raise CommitRefused(str(invalid)) from None
    request_id = f"server-{secrets.token_hex(6)}"
    for _ in range(COMMIT_ATTEMPTS):
        head = storage.head(store_id)
        for offset, event in enumerate(batch):
            event.parentSeqNum, event.seqNum = head + offset, head + offset + 1
        try:
            appended = storage.append(store_id, batch, wire.args_text)
        except storage.ParentMismatch:
            continue
        except storage.PushRejected as rejected:
            raise CommitRefused(str(rejected)) from None
        handover.count_committed(signals.PYTHON, len(batch) - appended.already_stored, storage.database_of(store_id))
        return eventlog.Announcement(batch, appended, request_id), [event.seqNum for event in batch]
    raise CommitConflict(f"store {store_id!r}: the head moved {COMMIT_ATTEMPTS} times during the commit")


def _encoded(events: Iterable[tuple[str, object]]) -> list[tuple[str, wire.Raw]]:
    """``(name, args)`` pairs as names and compact JSON (``wire.Raw``); CommitRefused for anything else."""
    encoded = []
    for index, pair in enumerate(events):
        try:
            name, args = pair
        except (TypeError, ValueError):
            raise CommitRefused(f"event {index} is not a (name, args) pair") from None
        if not isinstance(name, str) or not name:
            raise CommitRefused(f"event {index} has no usable name: {name!r}")
        try:
            text = json.dumps(args, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CommitRefused(f"event {index} ({name}): args are not JSON ({exc})") from None
        except RecursionError:
            text = None
        if text is None or wire.args_too_deep(text):
            raise CommitRefused(f"event {index} ({name}): args nest too deeply: {wire.NESTING_LIMIT}")
        encoded.append((name, wire.Raw(text.encode())))
    if not encoded:
        raise CommitRefused("no events to commit")
    limit = conf.get("MAX_MESSAGE_BYTES")
    size = sum(len(name.encode()) + len(args) for name, args in encoded)
    if size > limit:
        # What a client's push may carry: clients receive these events in frames like their own.
        raise CommitRefused(f"the events take {size} bytes, more than MAX_MESSAGE_BYTES ({limit})")
    return encoded


def _database_for(store_id: str) -> str:
    """The alias of the database holding the store, or for a store not created yet the one it will be made in."""
    return placement.destinations([store_id])[store_id]


def _refuse_other_databases_transaction(store_id: str) -> None:
    """CommitOutsideStoreTransaction when the caller is in a transaction of another database than the store's
    and in none of the store's own: the commit could not be part of the transaction it appears in."""
    _check_store_id(store_id)
    alias = _database_for(store_id)
    if transaction.get_connection(alias).in_atomic_block:
        return
    others = sorted(
        connection.alias for connection in connections.all(initialized_only=True) if connection.in_atomic_block
    )
    if others:
        raise CommitOutsideStoreTransaction(
            f"store {store_id!r} is kept in database {alias!r}, but the transaction open is on {', '.join(others)}: "
            "the events would be stored and announced at once, whatever became of it. Commit inside "
            "syncapp.events.atomic(store_id), a transaction on the store's database, or pass independent=True "
            "to commit at once on purpose."
        )


def _check_store_id(store_id: str) -> None:
    problem = handshake.store_id_problem(store_id)
    if problem is not None:
        raise CommitRefused(f"storeId {store_id!r} {problem}")


def _check(store_id: str, client_id: str, session_id: str) -> None:
    _check_store_id(store_id)
    for field, value in (("client_id", client_id), ("session_id", session_id)):
        if not isinstance(value, str) or not value:
            raise CommitRefused(f"{field} must be a non-empty string")
    if not conf.get("CREATE_STORES") and not storage.store_exists(store_id):
        raise CommitRefused(f"unknown store {store_id!r} (CREATE_STORES is False)")
