"""A store's event log as the sync core uses it: commit a push, announce it, read pages, reset.

What a push means (durable before it is acknowledged, announced to every
subscriber of the store in both protocol generations' encodings) and how a
backlog is read are the same for every transport, and live here and in
``syncapp.core``. Storage runs on the database pool (``syncapp.storage.db``);
nothing here knows SQL or sockets.
"""

import asyncio
import time
from functools import cached_property

from asgiref.sync import async_to_sync
from django.db import DatabaseError, InterfaceError, OperationalError

from .. import conf, metrics, signals, storage
from ..fanout import broadcast
from ..protocol import wire
from ..storage import db, postgres, sqlite
from ..storage.lru import BoundedCache
from ..v03 import codec as v03_codec
from ..v04 import codec as v04_codec

# Events per database read while streaming a backlog: several chunks per round trip.
PAGES_PER_READ = 10


class StoreUnavailable(Exception):
    """The database failed; the message says whether it is an outage and whether the push may have been stored."""


# How often each process records a store's client generations (``Store.last_v0X_client_at``) on connect.
CLIENT_NOTE_INTERVAL_SECONDS = 60
# How long after a connection its record waits for a push to make it. Most clients push soon after connecting,
# and for 50 sockets connecting at once, a trip to a database thread and an UPDATE each were a fifth of the
# connections' CPU.
CLIENT_NOTE_DELAY_SECONDS = 1.0
# (storeId, generation) -> when this process last recorded it, for the STORE_CACHE_SIZE pairs used last.
_client_noted_at = BoundedCache(conf.store_cache_size)
# Running note_client tasks (the event loop keeps only weak references to tasks).
_notes_in_flight: set[asyncio.Task[None]] = set()


def _commits_at_once():
    """How many groups of pushes commit at once: one on SQLite (one writer), one per database thread elsewhere."""
    return 1 if storage.writes_one_at_a_time() else db.database_threads()


def _append_group(pendings):
    metrics.COMMIT_GROUP_PUSHES.observe(len(pendings))
    return storage.append_many(pendings)


# Pushes that wait for a commit are committed together (group commit).
_append_gathered = db.Gathered(_append_group, concurrency=_commits_at_once)


# New stores' spare tables (syncapp.storage.spares) are made again in the background, off every push's path, once
# pushes on the database threads pause for a moment (each asks while spares are wanted: new stores' pushes
# are among them), or a few seconds later at most: a burst of new stores renames spares without competing
# with their replacements' CREATE TABLEs for the database.
SPARES_REFILL_QUIET_SECONDS = 0.5
SPARES_REFILL_LONGEST_WAIT_SECONDS = 5.0
_refill_spares = db.Background(
    storage.refill_spares,
    quiet_seconds=SPARES_REFILL_QUIET_SECONDS,
    longest_wait_seconds=SPARES_REFILL_LONGEST_WAIT_SECONDS,
)


async def _append(pending):
    """A push to a store this process knows, on PostgreSQL in one statement on the event loop, on SQLite in one
    transaction on the event loop when it is alone and the database thread idle; any other on the database
    threads, gathered."""
    appended = await postgres.append_alone(pending)
    if appended is None:
        appended = await sqlite.append_alone(pending)
    if appended is not None:
        return appended
    try:
        return await _append_gathered(pending)
    finally:
        if storage.spares_wanted():
            _refill_spares.request()


async def commit(store_id, batch, backend_id=None, generation=None):
    """Append ``batch`` durably and return storage.Appended; raise PushRejected or StoreUnavailable.

    Pushes that arrive while commits run (one at a time on SQLite, one per
    database thread on PostgreSQL) wait and are then committed together: one
    fsync makes all of them durable, and none is acknowledged before it.

    The push also records its client's protocol ``generation`` as last seen
    (``note_client``), in the same statement.

    An error may come after the database committed (a connection lost during
    COMMIT): the store is read back before answering, so a stored batch is
    acknowledged and a lost one is not. When the read-back answers and finds
    nothing, the database is reachable again and the failure was that
    connection's (one left dead by an outage, in a thread idle meanwhile,
    which has now been dropped): the push is tried once more.
    """
    pending = storage.PendingAppend(store_id, batch, wire.args_text, backend_id, generation=generation)
    for attempts_left in (1, 0):
        try:
            appended = await _append(pending)
            if generation is not None:
                _client_noted_at.put((store_id, generation), time.monotonic())
            return appended
        except (OperationalError, InterfaceError):
            metrics.UNAVAILABLE.labels("database").inc()
            try:
                appended = await db.run(storage.read_back, storage.PendingAppend(store_id, batch, wire.args_text))
            except DatabaseError:
                raise StoreUnavailable("Push failed: the database is unavailable; it may have been stored") from None
            if appended is not None:
                return appended
            if not attempts_left:
                raise StoreUnavailable("Push failed: the database is unavailable; nothing was stored") from None
        except DatabaseError as error:
            # Not an outage (the connection answered, the transaction rolled back): saying "unavailable"
            # would make the client retry a push that fails the same way each time. The cause stays chained,
            # so the one log line of the failure shows it.
            raise StoreUnavailable("Push failed: the server could not store it; nothing was stored") from error


class Announcement:
    """A committed batch as every subscriber of both generations receives it, each encoding made once.

    0.3 sockets get ``PullRes`` frames with ``context: "push"`` and the push's
    requestId; 0.4 live pulls get ``NoMore`` pull responses, to which each adds
    its own envelope. Both are cut by bytes (``syncapp.protocol.pages``).
    """

    def __init__(self, batch, appended, request_id):
        self.batch = batch
        self.appended = appended
        self.request_id = request_id
        # Made as soon as the commit returns: fan-out latency counts from here (see syncapp.metrics).
        self.committed_at = time.time()

    @cached_property
    def v03_frames(self):
        return v03_codec.push_frames(self.batch, self.appended.created_at, self.request_id)

    @cached_property
    def v04_pages(self):
        return v04_codec.live_pages(self.batch, self.appended.created_at, self.appended.backend_id)


async def announce(store_id, announcement, origin_socket=None):
    """Tell every subscriber of the store, in every process, that ``announcement``'s batch was committed.

    ``origin_socket`` is the pushing socket's id: its own echo may be written at once (see
    ``StoreSocketConsumer.offer``).
    """
    batch = announcement.batch
    await broadcast.announce_events(
        store_id,
        first=batch[0].seqNum,
        last=batch[-1].seqNum,
        request_id=announcement.request_id,
        v03_frames=[v03_codec.encode(frame) for frame in announcement.v03_frames],
        v04_pages=[bytes(page).decode() for page in announcement.v04_pages],
        origin_socket=origin_socket,
        committed_at=announcement.committed_at,
    )


async def tell_receivers(store_id, announcement, origin):
    """Send ``events_committed`` for a committed batch (when anyone listens); see ``syncapp.signals``."""
    if signals.has_receivers():
        events = signals.stored_events(announcement.batch, announcement.appended.created_at, wire.args_text)
        await signals.asend(store_id, events, origin)


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
    """A stored row as the wire's Event (args passed through as the stored JSON text)."""
    return wire.Event(
        name=stored.name,
        args=wire.NULL_ARGS if stored.args is None else wire.Raw(stored.args.encode()),
        seqNum=stored.seq_num,
        parentSeqNum=stored.parent_seq_num,
        clientId=stored.client_id,
        sessionId=stored.session_id,
    )


def note_client(store_id, generation):
    """Record, in the background and at most once a minute per process, that a ``generation`` client connected.

    Pushes record their client's generation themselves (``commit``), so the
    record waits CLIENT_NOTE_DELAY_SECONDS and is left out if a push made it
    meanwhile. A bookkeeping write must never cost a client its connection,
    nor delay it: it runs as a task of its own, and its failures are ignored.
    """
    key = (store_id, generation)
    now = time.monotonic()
    if now - _client_noted_at.get(key, -CLIENT_NOTE_INTERVAL_SECONDS) < CLIENT_NOTE_INTERVAL_SECONDS:
        return
    _client_noted_at.put(key, now)
    asyncio.get_running_loop().call_later(CLIENT_NOTE_DELAY_SECONDS, _note_unless_pushed, key, now)


def _note_unless_pushed(key, noted_at):
    if _client_noted_at.get(key, noted_at) != noted_at:
        return
    task = asyncio.ensure_future(_note_client(key))
    _notes_in_flight.add(task)
    task.add_done_callback(_notes_in_flight.discard)


async def _note_client(key):
    try:
        if not await db.run(storage.note_client, *key):
            # The store does not exist yet: its first push records the client.
            _client_noted_at.pop(key)
    except DatabaseError:
        _client_noted_at.pop(key)
