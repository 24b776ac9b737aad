"""Moving a store's event log in and out: NDJSON export and import, and reading Cloudflare D1 files.

An NDJSON log is one JSON object per line with the event's wire keys plus its
``createdAt``, in seqNum order. Importing checks the chain line by line (to name
the offending line) and then writes through ``appends.append``, so every event
passes the very check a push does. A whole import is one transaction: a bad
line or a broken chain leaves the store as it was.

D1 files are what ``@livestore/sync-cf`` leaves behind: a SQLite database
(``wrangler dev`` keeps it under ``.wrangler/state/v3/d1/``) or the SQL text of
``wrangler d1 export``, holding one ``eventlog_<version>_<storeId>`` table per
store. Reading them is the only raw SQL here; writing goes through ``storage``.
"""

import functools
import re
import sqlite3
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import msgspec
from django.db import transaction

from .. import signals
from ..fanout import handover
from ..protocol import wire
from . import appends, reads, statements, stores

# Events per ``appends.append`` call while importing.
IMPORT_CHUNK_SIZE = 1000
# Events per page read while exporting.
EXPORT_PAGE_SIZE = 1000


class EventLine(msgspec.Struct, kw_only=True):
    """One event of an NDJSON log: the wire keys in the reference's order, then ``createdAt``."""

    name: str
    args: msgspec.Raw = wire.NULL_ARGS
    seqNum: wire.SeqNum
    parentSeqNum: wire.SeqNum
    clientId: str
    sessionId: str
    createdAt: str


class TransferError(Exception):
    """A log that cannot be imported as it is; nothing was written."""


class StoreNotEmpty(TransferError):
    """The target store already has events and the caller did not say to append or replace."""


# Export


def _line(stored):
    event = EventLine(
        name=stored.name,
        args=wire.NULL_ARGS if stored.args is None else msgspec.Raw(stored.args.encode()),
        seqNum=stored.seq_num,
        parentSeqNum=stored.parent_seq_num,
        clientId=stored.client_id,
        sessionId=stored.session_id,
        createdAt=stored.created_at,
    )
    return msgspec.json.encode(event) + b"\n"


def ndjson(events):
    """The NDJSON text (bytes) of ``StoredEvent``s, one line each; args are copied, not re-encoded."""
    return b"".join(_line(stored) for stored in events)


def export_pages(store_id):
    """The store's events as pages (lists of ``StoredEvent``), up to the head it had when the export began.

    Pinning the head makes the export a well-defined prefix of the log even while
    clients keep pushing; only one page is in memory at a time.
    """
    until = reads.head(store_id)
    after = 0
    while after < until:
        page = reads.read_page(store_id, after, min(EXPORT_PAGE_SIZE, until - after))
        if not page.events:
            return  # reset while exporting
        yield page.events
        after = page.events[-1].seq_num


# Import


# A line nests as deeply as its event's args may (``wire.MAX_ARGS_DEPTH``), under the event's object.
LINE_DEPTH = wire.MAX_ARGS_DEPTH + 1


def parse_ndjson(lines):
    """``(where, EventLine)`` for each non-blank line of ``lines``; raises TransferError naming a bad line.

    Args nested deeper than a client may push them are refused as a push is (``wire.MAX_ARGS_DEPTH``).
    """
    decoder = msgspec.json.Decoder(EventLine)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        if wire.nested_deeper(line, LINE_DEPTH):
            raise TransferError(f"{where}: {wire.TOO_DEEP}")
        try:
            event = decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise TransferError(f"{where}: not an event: {exc}") from None
        yield where, msgspec.structs.replace(event, args=wire.compact(event.args))


def _args_text(event):
    return None if event.args == wire.NULL_ARGS else bytes(event.args).decode()


def _checked(located_events, head):
    """The events, after checking each extends the one before (the first, ``head``)."""
    previous = head
    for where, event in located_events:
        if event.parentSeqNum != previous:
            raise TransferError(
                f"{where}: event e{event.seqNum} has parent e{event.parentSeqNum}, but the log ends at e{previous}"
            )
        if event.seqNum != event.parentSeqNum + 1:
            raise TransferError(f"{where}: event e{event.seqNum} does not follow its parent e{event.parentSeqNum}")
        previous = event.seqNum
        yield event


def _chunks(events, size):
    chunk = []
    for event in events:
        chunk.append(event)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _append_keeping_created_at(store, chunk):
    """Append ``chunk`` exactly as a push is appended, keeping each event's original createdAt; receivers of
    ``events_committed`` hear of it once the import's transaction commits."""
    appends.append(store.store_id, chunk, _args_text, created_at_of=attrgetter("createdAt"))
    handover.count_committed(signals.IMPORT, len(chunk), store._state.db)
    if signals.has_receivers():
        events = [
            reads.StoredEvent(e.seqNum, e.parentSeqNum, e.name, _args_text(e), e.createdAt, e.clientId, e.sessionId)
            for e in chunk
        ]
        transaction.on_commit(
            functools.partial(signals.send, store.store_id, events, signals.IMPORT), using=store._state.db
        )


@dataclass(frozen=True)
class Imported:
    events: int
    head: int
    replaced: int  # events the store had before a replacing import (0 when nothing was replaced)


REFUSE, APPEND, REPLACE = "refuse", "append", "replace"


def import_events(store_id, located_events, existing=REFUSE, progress=None):
    """Import ``(where, EventLine)`` pairs into the store in one transaction.

    ``existing`` says what to do when the store already has events: ``REFUSE``
    (raise StoreNotEmpty), ``APPEND`` (the log must start at the store's head) or
    ``REPLACE`` (reset the store first, undone too if the import fails). A store
    this call created is removed again when the import fails. ``progress(count)``
    is called after each append. Callers tell the store's sockets when ``replaced``.
    """
    created = stores.get_store(store_id) is None
    store = stores.open_store(store_id)
    try:
        with transaction.atomic(using=stores.database_of(store_id)):
            before = reads.head(store_id)
            if before and existing == REFUSE:
                raise StoreNotEmpty(f"store {store_id!r} already has {before} events")
            if before and existing == REPLACE:
                stores.reset(store_id)
            count = 0
            start = 0 if existing == REPLACE else before
            for chunk in _chunks(_checked(located_events, start), IMPORT_CHUNK_SIZE):
                try:
                    _append_keeping_created_at(store, chunk)
                except statements.PushRejected as exc:
                    raise TransferError(f"store {store_id!r} changed while importing: {exc}") from None
                count += len(chunk)
                if progress is not None:
                    progress(count)
    except BaseException:
        if created:
            stores.delete(store_id)
        raise
    return Imported(events=count, head=reads.head(store_id), replaced=before if existing == REPLACE else 0)


# Cloudflare D1


_D1_TABLE = re.compile(r"^eventlog_(\d+)_(.+)$")
_SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class D1Table:
    """One ``eventlog_<version>_<suffix>`` table; ``suffix`` is the storeId with non-alphanumerics made ``_``."""

    name: str
    version: int
    suffix: str

    @property
    def ambiguous(self):
        """Whether the suffix may not be the storeId: any ``_`` may have been ``-`` (or another character)."""
        return "_" in self.suffix


def open_d1(path):
    """A ``sqlite3`` connection to a D1 database file (read-only), or to the SQL of ``wrangler d1 export``.

    The SQL runs in a private in-memory database. Raises TransferError when ``path`` is neither.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc.strerror}") from None
    if header == _SQLITE_HEADER:
        return sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        with open(path, encoding="utf-8") as file:
            script = file.read()
    except UnicodeDecodeError:
        raise TransferError(f"{path} is neither a SQLite database nor SQL text") from None
    database = sqlite3.connect(":memory:")
    try:
        database.executescript(script)
    except sqlite3.Error as exc:
        database.close()
        raise TransferError(f"{path} is neither a SQLite database nor SQL that SQLite runs: {exc}") from None
    return database


def d1_tables(database):
    """The eventlog tables worth importing, and those superseded by a newer storage version of the same suffix.

    The reference bumps ``PERSISTENCE_FORMAT_VERSION`` for a "soft reset" and leaves
    the older tables behind: only the newest version of each store is its live log.
    """
    newest = {}
    superseded = []
    for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        match = _D1_TABLE.match(name)
        if match is None:
            continue
        table = D1Table(name=name, version=int(match[1]), suffix=match[2])
        current = newest.get(table.suffix)
        if current is None or table.version > current.version:
            newest[table.suffix] = table
            if current is not None:
                superseded.append(current)
        else:
            superseded.append(table)
    return sorted(newest.values(), key=lambda t: t.name), sorted(superseded, key=lambda t: t.name)


def _quoted(identifier):
    return '"' + identifier.replace('"', '""') + '"'


def d1_row_count(database, table):
    return database.execute(f"SELECT count(*) FROM {_quoted(table.name)}").fetchone()[0]


def d1_events(database, table):
    """``(where, EventLine)`` for each row of ``table`` in seqNum order; raises TransferError naming a bad row."""
    columns = {row[1] for row in database.execute(f"PRAGMA table_info({_quoted(table.name)})")}
    missing = [column for column in statements.EVENT_COLUMNS if column not in columns]
    if missing:
        raise TransferError(f"{table.name} lacks the eventlog columns {', '.join(missing)}")
    query = f"SELECT {', '.join(statements.EVENT_COLUMNS)} FROM {_quoted(table.name)} ORDER BY seqNum"
    for number, row in enumerate(database.execute(query), start=1):
        fields = dict(zip(statements.EVENT_COLUMNS, row, strict=True))
        where = f"row {number} (seqNum {fields['seqNum']})"
        args = fields.pop("args")
        if isinstance(args, (str, bytes)) and wire.args_too_deep(args):
            raise TransferError(f"{where}: args: {wire.TOO_DEEP}")
        try:
            event = msgspec.convert(fields, EventLine)
            if args is not None:
                event = msgspec.structs.replace(event, args=wire.compact(args))
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
            raise TransferError(f"{where}: not an event: {exc}") from None
        yield where, event
