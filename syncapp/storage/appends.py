"""Appending pushes with the chain check: a group of pushes in one transaction per database (group
commit), a lone push in one statement, and the general path a push falls back to (a retry, a stale parent).

Everything here is synchronous and blocking; callers on an event loop run it
through ``syncapp.storage.db``.
"""

import collections
import itertools

from django.db import DatabaseError, DataError, InterfaceError, OperationalError, connections, transaction

from ..models import Store
from . import placement
from .backends import _local_writer
from .reads import _select_sql, read_page
from .sqlite import _append_alone_sqlite
from .statements import (
    Appended,
    BackendIdMismatch,
    ParentMismatch,
    PendingAppend,
    PushRejected,
    UnstorableBatch,
    _identity,
    _insert_sql,
    _move_head_parameters,
    _move_head_sql,
    _rows,
    alone_statement,
    chain_break,
    now_iso,
)
from .stores import _create_new_stores, _locate, _locations, _moved_away, _refresh


def append(store_id, batch, args_text, created_at=None, created_at_of=None, backend_id=None, generation=None):
    """Append ``batch`` to the store in one transaction and return it as Appended.

    ``batch`` holds objects with name/seqNum/parentSeqNum/clientId/sessionId;
    ``args_text(event)`` gives each event's args as JSON text or None;
    ``created_at`` (ISO text) defaults to now; ``created_at_of(event)``, when
    given, is each event's own createdAt (imports keep the original times);
    ``backend_id``, when given, is the incarnation the pusher's log belongs to;
    ``generation`` ("0.3" or "0.4"), when given, is recorded as the store's
    last client of that protocol generation.

    The head moves first, by a compare-and-set (``UPDATE … WHERE head = parent
    AND backend_id = …``) that also takes the store row's lock, so concurrent
    pushes to one store queue on the database and exactly one wins each parent,
    in any number of processes, and no push lands on a log reset meanwhile.
    Then the rows are inserted and the transaction commits. A batch that is not
    a chain of its own moves nothing: it is a BrokenChain if the head matched
    its parent, else a ParentMismatch. Raises PushRejected with nothing written.

    A batch whose leading events are already stored, identical in every field
    but createdAt, is a retry of a push whose acknowledgement the client lost
    (a dropped socket, a reloaded page): those events are skipped and the rest
    is appended on top of them. Any difference is a ParentMismatch as usual.
    """
    pending = PendingAppend(store_id, batch, args_text, backend_id, created_at_of, generation)
    (outcome,) = append_many([pending], created_at)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def append_many(pendings, created_at=None):
    """Append several pushes in one transaction per database, so that one commit (one fsync) makes them durable.

    Each push is checked and written as ``append`` describes. Every check comes
    before a push's first write, so a rejected push leaves the transaction as it
    found it and the others go on. Returns, per push, its Appended, the
    PushRejected it met, or the DatabaseError that rolled back its database's
    transaction (stores in other databases are not held back by it). Store rows
    are locked in the order of their ids, so that groups committing at once in
    several processes never wait for each other in a cycle. New stores are
    created first, together, in a transaction of their own: a push rejected
    later never undoes them.
    """
    created_at = created_at or now_iso()
    outcomes = [None] * len(pendings)
    destinations = placement.destinations([pending.store_id for pending in pendings])
    by_database = collections.defaultdict(list)
    for index, pending in enumerate(pendings):
        by_database[destinations[pending.store_id]].append(index)
    for alias, indexes in by_database.items():
        try:
            with _local_writer(alias):
                _create_new_stores(alias, [pendings[index].store_id for index in indexes])
                _append_in(alias, indexes, pendings, created_at, outcomes)
        except DatabaseError as error:
            for index in indexes:
                outcomes[index] = outcomes[index] or error
    return [
        outcome or PushRejected(f"store {pending.store_id!r} was deleted or reset during the push")
        for pending, outcome in zip(pendings, outcomes, strict=True)
    ]


def _append_in(alias, indexes, pendings, created_at, outcomes):
    """Append the pushes ``indexes`` of ``pendings``, to stores of database ``alias``, filling in ``outcomes``."""
    for _ in range(4):
        located = {}
        for index in indexes:
            if outcomes[index] is None:
                try:
                    location = _checked_location(pendings[index])
                except PushRejected as rejected:
                    outcomes[index] = rejected
                    continue
                if location.database == alias:
                    located[index] = location
                else:
                    # Deleted and made again in another database since this push was grouped.
                    _locations.pop(pendings[index].store_id)
        if not located:
            break
        in_lock_order = sorted(located.items(), key=lambda item: item[1].pk)
        try:
            committed = _append_together(alias, in_lock_order, pendings, created_at)
        except DatabaseError as error:
            if _is_outage(alias, error):
                raise
            # One push's write failed on a working connection (values the database refused, a check the codecs
            # do not know of; a table gone missing; a lock or statement timeout): each is tried alone, so that
            # only that push fails and the others are stored.
            committed = {}
            for index, location in in_lock_order:
                try:
                    committed.update(_append_together(alias, [(index, location)], pendings, created_at))
                except DataError as refused:
                    committed[index] = UnstorableBatch(f"Push rejected: the database cannot store it ({refused})")
                except DatabaseError as failed:
                    if _is_outage(alias, failed):
                        raise
                    # None: its table moved since it was looked up, and the push is tried again where it is now.
                    committed[index] = None if _moved_away(location, failed) else failed
        for index, outcome in committed.items():
            if outcome is None:
                _locations.pop(pendings[index].store_id)
            else:
                outcomes[index] = outcome


def _is_outage(alias, error):
    """Whether ``error`` means database ``alias`` could not be reached (its callers read back what was stored),
    rather than that one statement failed on a connection that still works.

    PostgreSQL reports lock and statement timeouts and deadlocks as OperationalError, like a lost
    connection: the connection tells them apart. On SQLite every OperationalError counts as an outage.
    """
    if not isinstance(error, (OperationalError, InterfaceError)):
        return False
    connection = connections[alias]
    return connection.vendor != "postgresql" or not connection.is_usable()


def _append_together(alias, in_lock_order, pendings, created_at):
    """Append the located pushes in one transaction of database ``alias``: ``{index: Appended, PushRejected
    or None}``, None where the store's location was stale (it is looked up again)."""
    connection = connections[alias]
    if len(in_lock_order) == 1 and not connection.in_atomic_block:
        index, location = in_lock_order[0]
        appended = None
        if connection.vendor == "postgresql":
            appended = _append_alone(location, pendings[index], created_at)
        elif connection.vendor == "sqlite":
            appended = _append_alone_sqlite(location, pendings[index], created_at)
        if appended is not None:
            return {index: appended}
    committed = {}
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for index, location in in_lock_order:
            try:
                committed[index] = _append_at(cursor, location, pendings[index], created_at)
            except _Relocate:
                committed[index] = None
            except PushRejected as rejected:
                committed[index] = rejected
    return committed


def _append_alone(location, pending, created_at):
    """A lone push that extends the head, in one PostgreSQL statement that commits on its own; None otherwise.

    The compare-and-set and the insert are one statement (``WITH moved AS
    (UPDATE … RETURNING) INSERT … WHERE EXISTS (moved)``) run outside a
    transaction block: one round trip, and the statement's own commit makes
    it durable (``synchronous_commit``), where a transaction costs four
    (BEGIN, UPDATE, INSERT, COMMIT). Anything else — a stale parent, a
    retry, a broken chain — moved nothing, and takes the general path.
    ``syncapp.storage.postgres`` runs the same statement on the event loop.
    """
    statement = alone_statement(location, pending, created_at)
    if statement is None:
        return None
    with connections[location.database].cursor() as cursor:
        cursor.execute(statement.sql, statement.parameters)
        inserted = cursor.rowcount
    return Appended(created_at, location.backend_id) if inserted == len(pending.batch) else None


class _Relocate(Exception):
    """The store's cached location is stale: it was deleted or reset since this process looked it up."""


def _checked_location(pending):
    """The store's location (the store is created on first use); BackendIdMismatch for a pusher from before a reset."""
    location = _locate(pending.store_id, create=True)
    if pending.backend_id is not None and pending.backend_id != location.backend_id:
        # The cache may predate a reset by another process: decide on the stored id.
        location = _refresh(pending.store_id) or location
        if pending.backend_id != location.backend_id:
            raise BackendIdMismatch(location.backend_id, pending.backend_id)
    return location


def _append_at(cursor, location, pending, created_at):
    """Compare-and-set the head and insert the rows, in the caller's transaction (see ``append``).

    Raises (PushRejected, _Relocate) only before its first write.
    """
    batch = pending.batch
    # Known before any write, but answered only once the head matched: a stale or foreign push is
    # answered as one, and the client rebases instead of retrying a batch it cannot fix.
    broken = chain_break(batch)
    rows = _rows(pending, created_at)
    skipped = 0
    move_head = _move_head_sql(location.database, pending.generation)
    while True:
        if broken is None:
            cursor.execute(move_head, _move_head_parameters(location, pending, rows[skipped][1]))
            if cursor.rowcount == 1:
                break
        stored = Store.objects.using(location.database).filter(pk=location.pk).values_list("head", "backend_id")
        stored = stored.first()
        if stored is None or stored[1] != location.backend_id:
            raise _Relocate
        head = stored[0]
        if broken is not None and head == rows[skipped][1]:
            raise broken
        already_stored = _already_stored(cursor, location.db_table, rows, head)
        if already_stored <= skipped:
            # Nothing (more) of the batch is stored below the head: a stale push.
            raise ParentMismatch(batch[0].parentSeqNum, head)
        skipped = already_stored
        if skipped == len(rows):
            return Appended(created_at, location.backend_id, skipped)
    # Plain SQL on the hot path: one statement, no model instance per event.
    cursor.executemany(_insert_sql(cursor.db.ops, location.db_table), rows[skipped:])
    return Appended(created_at, location.backend_id, skipped)


def read_back(pending):
    """The push as Appended if the store holds its batch exactly (see ``_identity``), else None.

    For a push whose COMMIT failed on the wire: the database may have committed it anyway.
    """
    page = read_page(pending.store_id, pending.batch[0].parentSeqNum, len(pending.batch))
    if [_identity(row) for row in page.events] == [_identity(row) for row in _rows(pending, None)]:
        return Appended(page.events[0].created_at, page.backend_id)
    return None


def _already_stored(cursor, db_table, rows, head):
    """How many leading ``rows`` the store already holds, identical but for createdAt (0 on any difference).

    They count only if they run up to the head exactly and the rest of the batch continues from it:
    anything else is a stale push whatever its overlap.
    """
    overlap = list(itertools.takewhile(lambda row: row[0] <= head, rows))
    if not overlap or overlap[-1][0] != head or (len(overlap) < len(rows) and rows[len(overlap)][1] != head):
        return 0
    cursor.execute(_select_sql(cursor.db, db_table), [rows[0][1], head, len(overlap)])
    stored = [_identity(row) for row in cursor.fetchall()]
    return len(overlap) if stored == [_identity(row) for row in overlap] else 0
