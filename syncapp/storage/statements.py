"""What every append path shares: the outcomes, a pending push, the chain check, and the statements that
move a store's head and insert its events (the general path's, and the one-statement lone push's).
"""

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec
from django.db import connections

from ..models import Store
from ..protocol.generations import V03, V04
from .backends import _operations
from .tables import _event_fields


class PushRejected(Exception):
    """A batch that does not extend the store's chain; nothing was written."""


class ParentMismatch(PushRejected):
    """The batch's first parent is not the store's head (the client must pull and rebase)."""

    def __init__(self, received, head):
        super().__init__(f"parent e{received}, head e{head}")
        self.received = received
        self.head = head


class BrokenChain(PushRejected):
    """The batch is not a contiguous chain of its own."""


class UnstorableBatch(PushRejected):
    """The database refused the batch's values (it was alone in its transaction: no other push failed)."""


class BackendIdMismatch(PushRejected):
    """The pusher's log belongs to another incarnation of the store (it was reset since)."""

    def __init__(self, expected, received):
        super().__init__(f"backendId {received!r}, store has {expected!r}")
        self.expected = expected
        self.received = received


class Appended(NamedTuple):
    """A committed batch: its createdAt, the backendId of the log it joined, and how many of
    its leading events were already stored (an identical retry; those were not written again)."""

    created_at: str
    backend_id: str
    already_stored: int = 0


def now_iso():
    """The current time as JavaScript's ``Date.prototype.toISOString`` writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def chain_break(batch):
    """The BrokenChain to answer unless each event's parent is the previous event and its seqNum is
    parent + 1; None for a sound chain."""
    previous = batch[0].parentSeqNum
    for index, event in enumerate(batch):
        if event.parentSeqNum != previous:
            return BrokenChain(f"Invalid batch: event {index} has parent e{event.parentSeqNum} but follows e{previous}")
        if event.seqNum != event.parentSeqNum + 1:
            return BrokenChain(
                f"Invalid batch: event {index} has seqNum e{event.seqNum} but its parent is e{event.parentSeqNum}"
            )
        previous = event.seqNum
    return None


# Client generations whose last connection is recorded on the Store row, by field.
CLIENT_GENERATION_FIELDS = {V03: "last_v03_client_at", V04: "last_v04_client_at"}


@functools.cache
def _move_head_sql(alias, generation):
    """A push's compare-and-set of the head; it also stamps the pusher's protocol ``generation`` (if given)
    as last seen, which then costs no statement of its own."""
    quote = _operations(alias).quote_name
    columns = ["head", "updated_at"] + ([CLIENT_GENERATION_FIELDS[generation]] if generation else [])
    return "UPDATE {table} SET {assignments} WHERE {pk} = %s AND {head} = %s AND {backend_id} = %s".format(
        table=quote(Store._meta.db_table),
        assignments=", ".join(f"{quote(column)} = %s" for column in columns),
        pk=quote("id"),
        head=quote("head"),
        backend_id=quote("backend_id"),
    )


def _move_head_parameters(location, pending, parent, now=None):
    """The parameters of ``_move_head_sql``: the new head and its stamps, then the store, ``parent`` and backendId.

    ``now`` is the stamp as the database takes it (by default, adapted by the store database's connection).
    """
    if now is None:
        now = connections[location.database].ops.adapt_datetimefield_value(datetime.now(UTC))
    stamps = [now, now] if pending.generation else [now]
    return [pending.batch[-1].seqNum, *stamps, location.pk, parent, location.backend_id]


# The reference's eventlog columns, in its order (a D1 table maps onto them 1:1).
EVENT_COLUMNS = ("seqNum", "parentSeqNum", "name", "args", "createdAt", "clientId", "sessionId")


def _insert_sql(operations, db_table):
    quote = operations.quote_name
    return "INSERT INTO {} ({}) VALUES ({})".format(
        quote(db_table), ", ".join(quote(c) for c in EVENT_COLUMNS), ", ".join(["%s"] * len(EVENT_COLUMNS))
    )


@dataclass(frozen=True)
class PendingAppend:
    """One push waiting to be appended: see ``append`` for the fields."""

    store_id: str
    batch: list
    args_text: object
    backend_id: str | None = None
    created_at_of: object = None
    generation: str | None = None


# Events a one-statement push may carry. The statement carries its rows before it is known whether the head
# matched: a stale push of 10,000 events would cost the database thread a third of a second of building and
# parsing for nothing, while pushes queue behind it (tests/hostile/test_invariant.py saw throughput collapse).
# A longer batch takes the general path, which compares and sets the head first.
ALONE_MAX_EVENTS = 100


class AloneStatement(NamedTuple):
    """A lone push's one statement and its parameters."""

    sql: str
    parameters: list


def alone_statement(location, pending, created_at, now=None):
    """The ``AloneStatement`` of a lone push (see ``_append_alone``), or None for a batch that needs the general
    path (longer than ALONE_MAX_EVENTS, or not a chain of its own).

    A batch whose rows would take more than ROW_PARAMETERS_MAX parameters
    goes as one: a JSON array of its rows, written by msgspec in C, which
    PostgreSQL unpacks (``jsonb_array_elements``). As parameters of their own,
    a 100-event push's 700 values cost psycopg 1 ms to convert (it caches the
    conversion of a statement of at most 50); as seven binary arrays, the
    client spent 0.65-0.85 ms on each such statement, as JSON 0.37-0.46 ms.
    Both forms are plain text, so any statement can join a group bound on the
    client (``syncapp.storage.postgres``).
    """
    batch = pending.batch
    if len(batch) > ALONE_MAX_EVENTS or chain_break(batch) is not None:
        return None
    rows = _rows(pending, created_at)
    parameters = _move_head_parameters(location, pending, batch[0].parentSeqNum, now)
    if len(parameters) + len(EVENT_COLUMNS) * len(rows) > ROW_PARAMETERS_MAX:
        sql = _append_json_rows_sql(location.database, location.db_table, pending.generation)
        return AloneStatement(sql, [*parameters, msgspec.json.encode(rows).decode()])
    sql = _append_alone_sql(location.database, location.db_table, pending.generation, len(rows))
    return AloneStatement(sql, [*parameters, *(value for row in rows for value in row)])


# Past this many parameters, a statement's rows go as one JSON parameter (see ``alone_statement``): psycopg 3
# caches the conversion of a statement's parameters up to 50 of them.
ROW_PARAMETERS_MAX = 50


def _one_statement(alias, generation, db_table, rows):
    """The compare-and-set, then ``rows`` (SQL yielding the pushed rows) inserted if the head moved."""
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(c) for c in EVENT_COLUMNS)
    return (
        f"WITH moved AS ({_move_head_sql(alias, generation)} RETURNING 1) "
        f"INSERT INTO {quote(db_table)} ({columns}) "
        f"SELECT * FROM {rows} "
        "WHERE EXISTS (SELECT 1 FROM moved)"
    )


# Statements of the stores pushed to last; a push builds its text once per store (and batch length).
@functools.lru_cache(maxsize=1024)
def _append_alone_sql(alias, db_table, generation, row_count):
    quote = connections[alias].ops.quote_name
    row = "(" + ", ".join(["%s"] * len(EVENT_COLUMNS)) + ")"
    columns = ", ".join(quote(c) for c in EVENT_COLUMNS)
    return _one_statement(alias, generation, db_table, f"(VALUES {', '.join([row] * row_count)}) AS pushed ({columns})")


@functools.lru_cache(maxsize=1024)
def _append_json_rows_sql(alias, db_table, generation):
    connection = connections[alias]
    values = ", ".join(
        f"(pushed ->> {index})::{field.db_type(connection)}" for index, field in enumerate(_event_fields().values())
    )
    return _one_statement(
        alias, generation, db_table, f"(SELECT {values} FROM jsonb_array_elements(%s::jsonb) pushed) rows"
    )


def _rows(pending, created_at):
    """The push's eventlog rows, columns in ``EVENT_COLUMNS`` order."""
    return [
        (
            e.seqNum,
            e.parentSeqNum,
            e.name,
            pending.args_text(e),
            pending.created_at_of(e) if pending.created_at_of else created_at,
            e.clientId,
            e.sessionId,
        )
        for e in pending.batch
    ]


def _identity(row):
    """What makes a stored event the same as a pushed one: every column but createdAt."""
    return (row[0], row[1], row[2], row[3], row[5], row[6])
