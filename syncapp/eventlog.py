"""A store's event log as every transport uses it: commit a push, announce it, read pages.

The 0.3 WebSocket consumer, the 0.4 WebSocket consumer and the 0.4 HTTP
endpoint differ only in their envelopes; what a push means (durable before it
is acknowledged, announced to every socket of the store, in both protocol
generations' encodings) and how a backlog is read are the same, and live here.
Storage runs on the database pool (``syncapp.db``); nothing here knows SQL or
sockets.
"""

import asyncio
import time

from asgiref.sync import async_to_sync
from django.db import DatabaseError, InterfaceError, OperationalError

from . import broadcast, conf, db, protocol, rpc_protocol, storage

# Events per database read while streaming a backlog: several chunks per round trip.
PAGES_PER_READ = 10


class StoreUnavailable(Exception):
    """The database failed; the message says whether it is an outage and whether the push may have been stored."""


def args_text(event):
    """An event's args as stored: the client's JSON text, or None when it sent none."""
    return None if event.args is protocol.UNSET else bytes(event.args).decode()


# How often each process records a store's client generations (``Store.last_v0X_client_at``) on connect.
CLIENT_NOTE_INTERVAL_SECONDS = 60
_client_noted_at = {}
# Running note_client tasks (the event loop keeps only weak references to tasks).
_notes_in_flight = set()


def _commits_at_once():
    """How many groups of pushes commit at once: one on SQLite (one writer), one per database thread elsewhere."""
    return 1 if storage.writes_one_at_a_time() else conf.get("DATABASE_THREADS")


# Pushes that wait for a commit are committed together (group commit).
_append_gathered = db.Gathered(storage.append_many, concurrency=_commits_at_once)


async def commit(store_id, batch, backend_id=None, generation=None):
    """Append ``batch`` durably and return storage.Appended; raise PushRejected or StoreUnavailable.

    Pushes that arrive while commits run (one at a time on SQLite, one per
    database thread on PostgreSQL) wait and are then committed together: one
    fsync makes all of them durable, and none is acknowledged before it.

    The push also records its client's protocol ``generation`` as last seen
    (``note_client``), in the same statement.

    An error may come after the database committed (a connection lost during
    COMMIT): the store is read back before answering, so a stored batch is
    acknowledged and a lost one is not.
    """
    try:
        appended = await _append_gathered(
            storage.PendingAppend(store_id, batch, args_text, backend_id, generation=generation)
        )
        if generation is not None:
            _client_noted_at[(store_id, generation)] = time.monotonic()
        return appended
    except (OperationalError, InterfaceError):
        appended = await _committed_anyway(store_id, batch)
        if appended:
            return appended
        outcome = "nothing was stored" if appended is False else "it may have been stored"
        raise StoreUnavailable(f"Push failed: the database is unavailable; {outcome}") from None
    except DatabaseError as error:
        # Not an outage (the connection answered, the transaction rolled back): saying "unavailable"
        # would make the client retry a push that fails the same way each time. The cause stays chained,
        # so the transport's one log line of the failure shows it.
        raise StoreUnavailable("Push failed: the server could not store it; nothing was stored") from error


async def _committed_anyway(store_id, batch):
    """Appended if the store holds ``batch`` after all, False if it does not, None if unknown."""
    try:
        page = await db.run(storage.read_page, store_id, batch[0].parentSeqNum, len(batch))
    except DatabaseError:
        return None
    stored = [(e.seq_num, e.parent_seq_num, e.name, e.args, e.client_id, e.session_id) for e in page.events]
    pushed = [(e.seqNum, e.parentSeqNum, e.name, args_text(e), e.clientId, e.sessionId) for e in batch]
    if stored == pushed:
        return storage.Appended(page.events[0].created_at, page.backend_id)
    return False


async def announce(store_id, batch, appended, request_id, v03_frames=None):
    """Tell every socket of the store, in every process, that ``batch`` was committed.

    The message carries the batch encoded once per protocol generation: the 0.3
    ``PullRes`` frames (``v03_frames`` if the caller already built them) and the
    0.4 ``NoMore`` pull responses, both cut by bytes (``syncapp.pages``); each
    socket only adds its envelope.
    """
    if v03_frames is None:
        v03_frames = protocol.push_frames(batch, appended.created_at, request_id)
    items = [rpc_protocol.encode_item(event, appended.created_at) for event in batch]
    await broadcast.announce_events(
        store_id,
        first=batch[0].seqNum,
        last=batch[-1].seqNum,
        request_id=request_id,
        v03_frames=[protocol.encode(frame) for frame in v03_frames],
        v04_pages=[bytes(page).decode() for page in rpc_protocol.live_pages(items, appended.backend_id)],
    )


async def reset(store_id, origin=None):
    """Empty the store and give it a new backendId, then tell its sockets in every process (all but the
    ``origin`` socket) to reconnect. Every reset is this or ``reset_blocking``: the 0.3 admin frame, the
    Django admin, ``livesync_reset``."""
    await db.run(storage.reset, store_id)
    await broadcast.announce_reset(store_id, origin=origin)


def reset_blocking(store_id):
    """``reset`` for code outside the event loop (the Django admin, management commands)."""
    storage.reset(store_id)
    async_to_sync(broadcast.announce_reset)(store_id)


async def reads(store_id, after, create=False):
    """The store's events after ``after`` as successive storage Pages, until the head is reached.

    Reading goes on until a read finds nothing beyond it, so events committed
    while a long backlog streams are part of it. Memory stays bounded by one
    read. The first Page is yielded even when empty (it carries the head and
    the backendId).
    """
    limit = conf.get("PULL_CHUNK_SIZE") * PAGES_PER_READ
    while True:
        page = await db.run(storage.read_page, store_id, after, limit, create)
        yield page
        if page.events:
            after = page.events[-1].seq_num
        if page.remaining == 0:
            return


def wire_event(stored):
    """A stored row as the protocol's Event (args passed through as the stored JSON text)."""
    return protocol.Event(
        name=stored.name,
        args=protocol.NULL_ARGS if stored.args is None else protocol.Raw(stored.args.encode()),
        seqNum=stored.seq_num,
        parentSeqNum=stored.parent_seq_num,
        clientId=stored.client_id,
        sessionId=stored.session_id,
    )


def note_client(store_id, generation):
    """Record, in the background and at most once a minute per process, that a ``generation`` client connected.

    Pushes record their client's generation themselves (``commit``). A
    bookkeeping write must never cost a client its connection, nor delay it:
    it runs as a task of its own, and its failures are ignored.
    """
    key = (store_id, generation)
    now = time.monotonic()
    if now - _client_noted_at.get(key, -CLIENT_NOTE_INTERVAL_SECONDS) < CLIENT_NOTE_INTERVAL_SECONDS:
        return
    _client_noted_at[key] = now
    task = asyncio.ensure_future(_note_client(key))
    _notes_in_flight.add(task)
    task.add_done_callback(_notes_in_flight.discard)


async def _note_client(key):
    try:
        if not await db.run(storage.note_client, *key):
            # The store does not exist yet: its first push records the client.
            _client_noted_at.pop(key, None)
    except DatabaseError:
        _client_noted_at.pop(key, None)
