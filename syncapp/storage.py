"""Per-store eventlog tables: creation, append with the chain check, paged reads, reset, delete.

Each store's events live in ``eventlog_<PERSISTENCE_FORMAT_VERSION>_<storeId>``
with exactly the reference's columns, so a D1 table maps onto it 1:1. The model
class of a table is built at run time in a private ``Apps()`` registry (as
Django's ``MigrationRecorder`` does), so these models never reach migrations or
the global app registry.

The cost of a store does not grow with the number of stores: on SQLite and
PostgreSQL nothing here lists the database's tables or scans the registry.
Name collisions are found by the database itself (the registry's unique
constraints, ``CREATE TABLE`` failing), and what a process keeps per store is
bounded (``syncapp.lru``).

Stores may be spread over several databases (``syncapp.placement``): each
function finds the store's database first, and runs there.

Everything here is synchronous and blocking; callers on an event loop run it
through ``syncapp.db``. Nothing here knows about WebSockets or frames.
"""

import collections
import contextlib
import functools
import hashlib
import itertools
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec
from django.apps.registry import Apps
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    models,
    transaction,
)

from . import conf, placement, spares
from .generations import V03, V04
from .lru import BoundedCache
from .models import Store, new_backend_id

# The reference's storage format version (``PERSISTENCE_FORMAT_VERSION`` in
# @livestore/sync-cf 0.3.1); part of every eventlog table name.
PERSISTENCE_FORMAT_VERSION = 7
TABLE_PREFIX = f"eventlog_{PERSISTENCE_FORMAT_VERSION}_"

_eventlog_apps = Apps()
_lock = threading.Lock()


# One per SQLite database, by alias (see _local_writer).
_sqlite_writers: collections.defaultdict[str, threading.RLock] = collections.defaultdict(threading.RLock)


@functools.cache
def writes_one_at_a_time():
    """Whether a store database takes one writing transaction at a time (SQLite), so that pushes queue for it.

    Cached: on an event loop each task would otherwise build a connection wrapper of its own to ask.
    """
    return any(connections[alias].vendor == "sqlite" for alias in placement.store_databases())


def _local_writer(alias):
    """On SQLite, one writing thread per process and database at a time (reentrant: a push may create its store).

    SQLite allows one writer; threads that meet its lock back off in sleeps of
    up to 100 ms, and one unlucky thread can wait out the whole busy timeout
    while others keep taking the lock (seen as pulls failing "database
    unavailable" while thousands of stores were being created). Queuing every
    writer on a Python lock instead hands the write lock over at once and in
    turn. Other databases lock rows themselves.

    Not inside a transaction that is already open: either this thread took the
    lock before opening it, or the caller opened it (``syncapp.events.commit``
    in ``atomic()``) and it may hold SQLite's lock already, and waiting for the
    Python lock while a thread holding it waits for SQLite's would stall both
    until the busy timeout.
    """
    connection = connections[alias]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return contextlib.nullcontext()
    return _sqlite_writers[alias]


def sqlite_writer_lock(alias):
    """The lock a thread of this process holds while it writes to SQLite database ``alias`` (see
    ``_local_writer``)."""
    return _sqlite_writers[alias]


def _unregister(table_name, model):
    """Drop a model from the private registry, so that the class (about 30 KB) can be collected.

    Only that class: one built again for the same table since stays registered.
    """
    registered = _eventlog_apps.all_models[model._meta.app_label]
    if registered.get(model._meta.model_name) is model:
        del registered[model._meta.model_name]
        _eventlog_apps.clear_cache()


# Model classes are used off the hot path only (creating, resetting, deleting a store; the admin's event pages):
# pushes and reads run plain SQL on the table's name. A few dozen cover any burst of such work.
MODEL_CACHE_SIZE = 64
_eventlog_models = BoundedCache(MODEL_CACHE_SIZE, on_evict=_unregister)


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


class StoredEvent(NamedTuple):
    """One eventlog row (a tuple: pages of thousands are built per pull)."""

    seq_num: int
    parent_seq_num: int
    name: str
    args: str | None
    created_at: str
    client_id: str
    session_id: str


@dataclass(frozen=True)
class Page:
    """Events after a cursor, and the store's head and backendId when they were read."""

    events: list
    head: int
    backend_id: str | None = None

    @property
    def remaining(self):
        """Events after this page up to the head; seqNums are contiguous, so no COUNT is needed."""
        last = self.events[-1].seq_num if self.events else self.head
        return max(0, self.head - last)


def sanitize(store_id):
    """The reference's table-name rule: every non-alphanumeric character becomes ``_``."""
    return re.sub(r"[^a-zA-Z0-9]", "_", store_id)


def table_name_for(store_id, hashed=False, salt="", alias=DEFAULT_DB_ALIAS):
    """The table name for ``store_id`` in database ``alias``: the reference's name, or a hash-suffixed one.

    The hashed form is used when the plain name is taken by another store (``a-b``
    and ``a_b`` sanitize alike; ``Abc`` and ``abc`` on SQLite, whose table names
    ignore case) or longer than the database allows. ``salt`` makes a name no one
    can compute in advance (see ``table_name_candidates``).
    """
    plain = TABLE_PREFIX + sanitize(store_id)
    limit = connections[alias].ops.max_name_length() or None
    if not hashed and not salt and (limit is None or len(plain) <= limit):
        return plain
    digest = hashlib.sha256((store_id + salt).encode()).hexdigest()[:10]
    if limit is not None:
        plain = plain[: limit - len(digest) - 1]
    return f"{plain}_{digest}"


# Salted names tried after the plain and the hashed one; each is unpredictable, so running out is not a risk.
SALTED_NAME_ATTEMPTS = 5


def table_name_candidates(store_id, alias):
    """Table names for a new store, in order of preference.

    The plain and the hashed name are stable, which keeps tables recognizable;
    both can be computed by anyone, so a client could take them first with
    storeIds of its own (``sq_x_<hash of sq_x>``, then ``sq-x``). Salted names
    follow, which no one can foresee: no storeId can be made unusable.
    """
    yield table_name_for(store_id, alias=alias)
    yield table_name_for(store_id, hashed=True, alias=alias)
    for _ in range(SALTED_NAME_ATTEMPTS):
        yield table_name_for(store_id, salt=secrets.token_hex(8), alias=alias)


def _table_key(connection, table_name):
    """How the database compares table names: SQLite ignores case, PostgreSQL (quoted) does not."""
    return table_name.lower() if connection.vendor == "sqlite" else table_name


def _run_create_table(cursor, table_name, keep_model=True):
    """``CREATE TABLE`` for an eventlog table, as Django's schema editor writes it for the table's model.

    Run as plain SQL in the caller's transaction, together with the store's
    row. Entering SQLite's schema editor would refuse to run inside a
    transaction, and on the way out runs ``PRAGMA foreign_key_check``, which
    walks every table in the database.

    ``keep_model=False`` (a spare table's): the model class built for the SQL
    is not kept, so it takes no store's place in the cache of models.
    """
    model = eventlog_model(table_name) if keep_model else _unkept_model(table_name)
    sql, params = cursor.db.schema_editor().table_sql(model)
    cursor.execute(sql, params or None)


def _unkept_model(table_name):
    with _lock:
        model = _build_model(table_name)
        _unregister(table_name, model)
    return model


@functools.cache
def _spare_prefix(alias):
    """The name prefix of the spare tables (``syncapp.spares``) whose columns are the eventlog's."""
    sql, _ = connections[alias].schema_editor().table_sql(_unkept_model(spares.NAME_START))
    return spares.prefix_for(sql)


# Store databases whose spare tables new stores took (or found none of) since their last refill.
_spares_wanted: set[str] = set()


def spares_wanted():
    """Whether new stores took spare tables since the last ``refill_spares`` (no database call)."""
    return bool(_spares_wanted)


# Spare tables one refill_spares call makes at most: a call holds a database thread, and pushes wait for those.
SPARES_PER_REFILL = 4


def refill_spares():
    """Make up to SPARES_PER_REFILL spare tables for a store database that new stores took spares from, each in
    a transaction of its own; True while some database still lacks spares (call again).

    Run in the background (see ``syncapp.eventlog``), a few tables at a time so
    that other calls get the database threads in between. Counting the spares
    before each call keeps several processes refilling at once from making many
    more than ``SPARE_TABLES``.
    """
    try:
        alias = _spares_wanted.pop()
    except KeyError:
        return False
    try:
        missing = _make_spares(alias, SPARES_PER_REFILL)
    except BaseException:
        _spares_wanted.add(alias)
        raise
    if missing > SPARES_PER_REFILL:
        _spares_wanted.add(alias)
    return spares_wanted()


def make_spares(alias):
    """Make every spare table store database ``alias`` lacks, at once (``migrate`` does, see ``syncapp.apps``)."""
    if spares.enabled(alias):
        _make_spares(alias, None)


def _make_spares(alias, most):
    """Make the spares ``alias`` lacks, at most ``most`` (None: all), each in a transaction of its own; return
    how many it lacked."""
    prefix = _spare_prefix(alias)
    missing = spares.shortfall(alias, prefix)
    for _ in range(missing if most is None else min(missing, most)):
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            _run_create_table(cursor, spares.new_name(prefix), keep_model=False)
    return missing


def _run_drop_table(cursor, table_name):
    cursor.execute(cursor.db.schema_editor().sql_delete_table % {"table": cursor.db.ops.quote_name(table_name)})


def _table_exists(alias, table_name):
    """Whether the database has this table (on SQLite: in any case), in one catalog lookup by name."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [connection.ops.quote_name(table_name)])
            return cursor.fetchone()[0]
        if connection.vendor == "sqlite":
            cursor.execute("SELECT 1 FROM pragma_table_info(%s) LIMIT 1", [table_name])
            return cursor.fetchone() is not None
    # Other databases: Django's introspection, which lists every table.
    names = connection.introspection.table_names()
    return _table_key(connection, table_name) in {_table_key(connection, name) for name in names}


def _is_orphan(alias, table_name):
    """Whether an existing table is there under exactly this name with no registry row claiming it (its row
    was lost).

    Only asked after ``CREATE TABLE`` failed on a table that exists. On SQLite
    it may be another store's table whose name differs in case, which is no
    orphan: finding its real name scans the schema, which only this rare path
    does.
    """
    connection = connections[alias]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = %s COLLATE NOCASE", [table_name]
            )
            found = cursor.fetchone()
        if found is None or found[0] != table_name:
            return False
    return not Store.objects.using(alias).filter(table_name=table_name).exists()


def eventlog_model(table_name):
    """The model class mapped onto one eventlog table (kept for the MODEL_CACHE_SIZE tables used last).

    A class fits the table of that name in any database; query it ``.using()`` the store's.
    """
    model = _eventlog_models.get(table_name)
    if model is not None:
        return model
    with _lock:
        model = _eventlog_models.get(table_name)
        if model is None:
            model = _build_model(table_name)
            _eventlog_models.put(table_name, model)
    return model


def _forget_model(table_name):
    with _lock:
        model = _eventlog_models.pop(table_name)
        if model is not None:
            _unregister(table_name, model)


class SeqNumField(models.BigIntegerField):
    """The eventlog's primary key: ``integer`` on SQLite, as in the reference's D1 table, ``bigint`` elsewhere.

    On SQLite only a column declared exactly ``integer primary key`` is the
    table's rowid: no separate index, so each store's table is one b-tree
    (half the file pages and half the schema entries of ``bigint``, which
    every other connection re-reads after each new table). SQLite's integers
    are 64-bit whatever the declared type.
    """

    def db_type(self, connection):
        return "integer" if connection.vendor == "sqlite" else super().db_type(connection)


def _event_fields():
    """The eventlog's fields by attribute name, columns in EVENT_COLUMNS order (new instances each time: a
    model class takes the fields it is given)."""
    return {
        "seq_num": SeqNumField(primary_key=True, db_column="seqNum"),
        "parent_seq_num": models.BigIntegerField(db_column="parentSeqNum"),
        "name": models.TextField(db_column="name"),
        "args": models.TextField(db_column="args", null=True),
        "created_at": models.TextField(db_column="createdAt"),
        "client_id": models.TextField(db_column="clientId"),
        "session_id": models.TextField(db_column="sessionId"),
    }


def _build_model(table_name):
    class Meta:
        apps = _eventlog_apps
        app_label = "syncapp_eventlog"
        db_table = table_name

    attrs = {"__module__": __name__, "Meta": Meta, **_event_fields()}
    class_name = "Eventlog_" + hashlib.sha256(table_name.encode()).hexdigest()[:16]
    return type(class_name, (models.Model,), attrs)


def _ensure_table(alias, table_name):
    """Create a registered store's eventlog table unless it exists; safe when several processes race.

    A store's row and table are created, and deleted, in one transaction, so
    the table is missing only when someone dropped it by hand (or the store
    was created by a version that made them one after the other).
    """
    if not _table_exists(alias, table_name):
        _create_table(alias, table_name)


def _create_table(alias, table_name):
    try:
        with _local_writer(alias), transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            _run_create_table(cursor, table_name)
    except DatabaseError:
        # Another process created it between our look and our CREATE TABLE.
        if not _table_exists(alias, table_name):
            raise


def database_of(store_id):
    """The alias of the database holding ``store_id``, or None for a store never created."""
    return placement.database_of(store_id)


def store_exists(store_id):
    """Whether ``store_id`` is in the registry (one indexed lookup, two when stores are spread)."""
    return get_store(store_id) is not None


def get_store(store_id):
    """The Store row for ``store_id`` (read from its database), or None."""
    alias = placement.database_of(store_id)
    if alias is None:
        return None
    return Store.objects.using(alias).filter(store_id=store_id).first()


@dataclass(frozen=True)
class _Location:
    pk: int
    table_name: str
    backend_id: str
    database: str

    @classmethod
    def of(cls, store):
        return cls(store.pk, store.table_name, store.backend_id, store._state.db)


# storeId -> where its events live, for the STORE_CACHE_SIZE stores used last. A
# store's row and table never move while it exists, so an entry is looked up once
# while the store is in use; delete() forgets it, and a store deleted by another
# process is noticed when its row is missing. The backendId changes on reset:
# append() checks it in its compare-and-set, so a stale cached one costs a
# retry, never a wrong answer.
_locations = BoundedCache(conf.store_cache_size)


def known_location(store_id):
    """Where the store's events live, if this process has it at hand (no database call), else None."""
    return _locations.get(store_id)


def _locate(store_id, create):
    """The store's row id, table and database (created on first use when ``create``), or None."""
    location = _locations.get(store_id)
    if location is not None:
        return location
    store = open_store(store_id) if create else get_store(store_id)
    if store is None:
        return None
    if not create:
        _ensure_table(store._state.db, store.table_name)
    location = _Location.of(store)
    _locations.put(store_id, location)
    return location


def open_store(store_id):
    """The Store for ``store_id``, created with its table on first use (in the database placement picks)."""
    store = get_store(store_id)
    if store is not None:
        _ensure_table(store._state.db, store.table_name)
        return store
    return _create_store(store_id)


def _create_new_stores(alias, store_ids):
    """Create those of ``store_ids`` (all bound for database ``alias``) that do not exist yet, their
    placements, rows and tables in one transaction.

    A group of pushes to new stores then costs one commit (one fsync) for all
    of them, not two per store. Anything unusual (a name already taken by a
    table, two new stores whose names sanitize alike, another process creating
    one meanwhile) is left to ``open_store``, one store at a time.
    """
    connection = connections[alias]
    unknown = [store_id for store_id in dict.fromkeys(store_ids) if store_id not in _locations]
    if not unknown:
        return
    stores = Store.objects.using(alias)
    known = set(stores.filter(store_id__in=unknown).values_list("store_id", flat=True))
    tables = {store_id: table_name_for(store_id, alias=alias) for store_id in unknown if store_id not in known}
    alike = collections.Counter(_table_key(connection, table) for table in tables.values())
    # In storeId order: two processes creating the same new stores then never wait for each other in a cycle.
    fresh = sorted((store_id, table) for store_id, table in tables.items() if alike[_table_key(connection, table)] == 1)
    if not fresh:
        return
    try:
        # One transaction where the database can roll DDL back (SQLite, PostgreSQL). A name that is taken
        # fails its INSERT or its CREATE TABLE, and the whole group is left to open_store.
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            ids = _claim([store_id for store_id, _ in fresh], alias)
            # One INSERT for the group's rows: one at a time, 34 new stores' rows took 48 ms of a 64 ms group.
            created = stores.bulk_create(
                [
                    Store(id=ids[store_id], store_id=store_id, table_name=table)
                    for store_id, table in fresh
                    if store_id in ids
                ]
            )
            keeps_spares = spares.enabled(alias)
            taken = spares.take(cursor, _spare_prefix(alias), len(created)) if keeps_spares else []
            for store, spare in itertools.zip_longest(created, taken):
                if spare is None:
                    _run_create_table(cursor, store.table_name)
                else:
                    spares.rename(cursor, spare, store.table_name)
    except DatabaseError:
        return
    if keeps_spares and created:
        _spares_wanted.add(alias)
    for store in created:
        _locations.put(store.store_id, _Location.of(store))


def _adopt_existing_events(store):
    """A new Store row over a table that already holds events takes their head.

    That happens when the registry row was lost or removed by hand while the
    table stayed; starting at head 0 would make every later push collide.
    """
    alias = store._state.db
    events = eventlog_model(store.table_name).objects.using(alias)
    latest = events.aggregate(latest=models.Max("seq_num"))["latest"]
    if latest:
        Store.objects.using(alias).filter(pk=store.pk, head=0).update(head=latest)
        store.refresh_from_db()


def _create_store(store_id):
    """A new Store row for ``store_id`` and its table, under the first free table name, in the database
    its placement names (recorded here for a new store).

    Row and table are created in one transaction, and the database decides
    what is free: the registry's unique constraints (storeId, table name), and
    ``CREATE TABLE``, which fails on a table that exists (on SQLite, where
    ``Abc`` and ``abc`` name one table, also in another case). A table that
    exists with no row claiming it lost its row, and is adopted with its events.
    """
    alias = placement.destinations([store_id])[store_id]
    stores = Store.objects.using(alias)
    with _local_writer(alias):
        for table_name in table_name_candidates(store_id, alias):
            try:
                with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                    store = stores.create(id=_claimed_id(store_id, alias), store_id=store_id, table_name=table_name)
                    _run_create_table(cursor, table_name)
                return store
            except IntegrityError:
                pass
            except DatabaseError:
                if not _table_exists(alias, table_name):
                    # Not a name that is taken (a lock timeout, an outage): the caller reports it as what it is.
                    raise
                if not _is_orphan(alias, table_name):
                    continue
                try:
                    with transaction.atomic(using=alias):
                        store = stores.create(id=_claimed_id(store_id, alias), store_id=store_id, table_name=table_name)
                except IntegrityError:
                    pass
                else:
                    _adopt_existing_events(store)
                    return store
            existing = get_store(store_id)
            if existing is not None:
                # Another process created the store meanwhile.
                _ensure_table(existing._state.db, existing.table_name)
                return existing
    raise IntegrityError(f"no free table name for store {store_id!r}")


def _claim(store_ids, alias):
    """``placement.claim``, as the default database's one SQLite writer (always taken last, after the
    store database's: no two threads wait for each other's)."""
    with _local_writer(DEFAULT_DB_ALIAS):
        return placement.claim(store_ids, alias)


def _claimed_id(store_id, alias):
    """The id the store takes, from its placement in ``alias``; IntegrityError when another process placed
    it elsewhere meanwhile (it is then found there)."""
    ids = _claim([store_id], alias)
    if store_id not in ids:
        placement.uncache(store_id)
        raise IntegrityError(f"store {store_id!r} was placed in another database meanwhile")
    return ids[store_id]


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


def _insert_sql(operations, table_name):
    quote = operations.quote_name
    return "INSERT INTO {} ({}) VALUES ({})".format(
        quote(table_name), ", ".join(quote(c) for c in EVENT_COLUMNS), ", ".join(["%s"] * len(EVENT_COLUMNS))
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
                    committed[index] = failed
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


# Events a one-statement push may carry. The statement carries its rows before it is known whether the head
# matched: a stale push of 10,000 events would cost the database thread a third of a second of building and
# parsing for nothing, while pushes queue behind it (tests/hostile/test_invariant.py saw throughput collapse).
# A longer batch takes the general path, which compares and sets the head first.
ALONE_MAX_EVENTS = 100


def _append_alone(location, pending, created_at):
    """A lone push that extends the head, in one PostgreSQL statement that commits on its own; None otherwise.

    The compare-and-set and the insert are one statement (``WITH moved AS
    (UPDATE … RETURNING) INSERT … WHERE EXISTS (moved)``) run outside a
    transaction block: one round trip, and the statement's own commit makes
    it durable (``synchronous_commit``), where a transaction costs four
    (BEGIN, UPDATE, INSERT, COMMIT). Anything else — a stale parent, a
    retry, a broken chain — moved nothing, and takes the general path.
    ``syncapp.pgloop`` runs the same statement on the event loop.
    """
    statement = alone_statement(location, pending, created_at)
    if statement is None:
        return None
    with connections[location.database].cursor() as cursor:
        cursor.execute(statement.sql, statement.parameters)
        inserted = cursor.rowcount
    return Appended(created_at, location.backend_id) if inserted == len(pending.batch) else None


def _append_alone_sqlite(location, pending, created_at):
    """A lone push that extends the head, on SQLite: ``append_alone_sqlite`` on this thread's connection."""
    connection = connections[location.database]
    connection.ensure_connection()
    driver = connection.connection
    try:
        with connection.wrap_database_errors:
            return append_alone_sqlite(driver, location, pending, created_at)
    finally:
        if driver.in_transaction:
            # Neither committed nor rolled back: a connection kept with that transaction would read its own
            # uncommitted rows back as stored.
            connection.close()


def append_alone_sqlite(driver, location, pending, created_at, wait_for_lock=True):
    """A lone push that extends the head, on SQLite: the compare-and-set and the insert in one transaction run
    on ``driver`` (sqlite3's own connection); None, with nothing written, for anything else, and, unless
    ``wait_for_lock``, when a lock held by another connection stood in its way.

    Django's ``atomic()`` and cursor wrappers are the general path's, where a
    push may meet a retry or a stale parent; for the push a store sees most,
    their Python cost the database thread more than the statements did. The
    thread holds the GIL for all of it while the event loop waits for its turn:
    a batch-1 push through them took about 0.27 ms more, end to end, than the
    same statements run here. The transaction takes the write lock at once
    (``BEGIN IMMEDIATE``) and commits with the connection's own settings
    (``synchronous=FULL``), so the push is durable when this returns, as on the
    general path. Whatever fails, the transaction is rolled back before this
    raises; a caller finding ``driver.in_transaction`` still true afterwards
    (the rollback failed too) must not use the connection again.

    Without ``wait_for_lock`` the connection's busy timeout is set aside for
    the transaction: in WAL mode only ``BEGIN`` can meet another writer's lock,
    in rollback-journal mode ``COMMIT`` can meet readers too, and either way
    the push is rolled back and None returned at once. ``syncapp.sqliteloop``
    runs it so on the event loop.
    """
    batch = pending.batch
    if chain_break(batch) is not None:
        return None
    alias = location.database
    rows = _rows(pending, created_at)
    now = _operations(alias).adapt_datetimefield_value(datetime.now(UTC))
    with _busy_timeout_set_aside(driver, not wait_for_lock):
        try:
            driver.execute("BEGIN IMMEDIATE")
            moved = driver.execute(
                _sqlite_placeholders(_move_head_sql(alias, pending.generation)),
                _move_head_parameters(location, pending, batch[0].parentSeqNum, now),
            ).rowcount
            if moved != 1:
                driver.execute("ROLLBACK")
                return None
            driver.executemany(_sqlite_placeholders(_insert_sql(_operations(alias), location.table_name)), rows)
            driver.execute("COMMIT")
        except sqlite3.OperationalError as error:
            _roll_back(driver)
            if not wait_for_lock and error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise
        except BaseException:
            _roll_back(driver)
            raise
    return Appended(created_at, location.backend_id)


@contextlib.contextmanager
def _busy_timeout_set_aside(driver, set_aside):
    """Within the block, ``driver`` meets a lock with an error at once instead of waiting (when ``set_aside``)."""
    if not set_aside:
        yield
        return
    (busy_timeout,) = driver.execute("PRAGMA busy_timeout").fetchone()
    driver.execute("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")


def _roll_back(driver):
    """End the transaction a failed statement left open, if it did (SQLite may have ended it already)."""
    if driver.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            driver.execute("ROLLBACK")


@functools.cache
def _operations(alias):
    """Database ``alias``'s DatabaseOperations (quoting names, adapting values), which never connect.

    Cached: on an event loop each task would otherwise build a connection wrapper of its own to ask.
    """
    return connections[alias].ops


def _sqlite_placeholders(sql):
    """``sql`` with the driver's placeholders, as Django's SQLite cursor converts it (``%s`` -> ``?``); the
    names and values in livesync's statements hold no ``%``."""
    return sql.replace("%s", "?")


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
    client (``syncapp.pgloop``).
    """
    batch = pending.batch
    if len(batch) > ALONE_MAX_EVENTS or chain_break(batch) is not None:
        return None
    rows = _rows(pending, created_at)
    parameters = _move_head_parameters(location, pending, batch[0].parentSeqNum, now)
    if len(parameters) + len(EVENT_COLUMNS) * len(rows) > ROW_PARAMETERS_MAX:
        sql = _append_json_rows_sql(location.database, location.table_name, pending.generation)
        return AloneStatement(sql, [*parameters, msgspec.json.encode(rows).decode()])
    sql = _append_alone_sql(location.database, location.table_name, pending.generation, len(rows))
    return AloneStatement(sql, [*parameters, *(value for row in rows for value in row)])


# Past this many parameters, a statement's rows go as one JSON parameter (see ``alone_statement``): psycopg 3
# caches the conversion of a statement's parameters up to 50 of them.
ROW_PARAMETERS_MAX = 50


def _one_statement(alias, generation, table_name, rows):
    """The compare-and-set, then ``rows`` (SQL yielding the pushed rows) inserted if the head moved."""
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(c) for c in EVENT_COLUMNS)
    return (
        f"WITH moved AS ({_move_head_sql(alias, generation)} RETURNING 1) "
        f"INSERT INTO {quote(table_name)} ({columns}) "
        f"SELECT * FROM {rows} "
        "WHERE EXISTS (SELECT 1 FROM moved)"
    )


# Statements of the stores pushed to last; a push builds its text once per store (and batch length).
@functools.lru_cache(maxsize=1024)
def _append_alone_sql(alias, table_name, generation, row_count):
    quote = connections[alias].ops.quote_name
    row = "(" + ", ".join(["%s"] * len(EVENT_COLUMNS)) + ")"
    columns = ", ".join(quote(c) for c in EVENT_COLUMNS)
    return _one_statement(
        alias, generation, table_name, f"(VALUES {', '.join([row] * row_count)}) AS pushed ({columns})"
    )


@functools.lru_cache(maxsize=1024)
def _append_json_rows_sql(alias, table_name, generation):
    connection = connections[alias]
    values = ", ".join(
        f"(pushed ->> {index})::{field.db_type(connection)}" for index, field in enumerate(_event_fields().values())
    )
    return _one_statement(
        alias, generation, table_name, f"(SELECT {values} FROM jsonb_array_elements(%s::jsonb) pushed) rows"
    )


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
        already_stored = _already_stored(cursor, location.table_name, rows, head)
        if already_stored <= skipped:
            # Nothing (more) of the batch is stored below the head: a stale push.
            raise ParentMismatch(batch[0].parentSeqNum, head)
        skipped = already_stored
        if skipped == len(rows):
            return Appended(created_at, location.backend_id, skipped)
    # Plain SQL on the hot path: one statement, no model instance per event.
    cursor.executemany(_insert_sql(cursor.db.ops, location.table_name), rows[skipped:])
    return Appended(created_at, location.backend_id, skipped)


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


def read_back(pending):
    """The push as Appended if the store holds its batch exactly (see ``_identity``), else None.

    For a push whose COMMIT failed on the wire: the database may have committed it anyway.
    """
    page = read_page(pending.store_id, pending.batch[0].parentSeqNum, len(pending.batch))
    if [_identity(row) for row in page.events] == [_identity(row) for row in _rows(pending, None)]:
        return Appended(page.events[0].created_at, page.backend_id)
    return None


def _already_stored(cursor, table_name, rows, head):
    """How many leading ``rows`` the store already holds, identical but for createdAt (0 on any difference).

    They count only if they run up to the head exactly and the rest of the batch continues from it:
    anything else is a stale push whatever its overlap.
    """
    overlap = list(itertools.takewhile(lambda row: row[0] <= head, rows))
    if not overlap or overlap[-1][0] != head or (len(overlap) < len(rows) and rows[len(overlap)][1] != head):
        return 0
    cursor.execute(_select_sql(cursor.db, table_name), [rows[0][1], head, len(overlap)])
    stored = [_identity(row) for row in cursor.fetchall()]
    return len(overlap) if stored == [_identity(row) for row in overlap] else 0


def _refresh(store_id):
    """The store's location read anew (None if it no longer exists)."""
    _locations.pop(store_id)
    return _locate(store_id, create=False)


@functools.cache
def _head_sql(alias):
    """A read's head and backendId: the ORM's query for them, written once, since a long pull reads a page
    of events after each (building the ORM's query cost as much CPU as reading about 400 events)."""
    quote = _operations(alias).quote_name
    return "SELECT {}, {} FROM {} WHERE {} = %s".format(
        quote("head"), quote("backend_id"), quote(Store._meta.db_table), quote("id")
    )


def _select_sql(connection, table_name):
    quote = connection.ops.quote_name
    return "SELECT {} FROM {} WHERE {seq} > %s AND {seq} <= %s ORDER BY {seq} LIMIT %s".format(
        ", ".join(quote(c) for c in EVENT_COLUMNS), quote(table_name), seq=quote("seqNum")
    )


# Bytes of args one read keeps (beyond its first event): a backlog of large events is read in smaller pages,
# so that a pull costs the server a bounded amount of memory whatever the events' size.
READ_PAGE_BYTES = 4_000_000
# Rows taken from the database cursor at a time while a read fills up to READ_PAGE_BYTES.
_FETCH_ROWS = 100


def read_page(store_id, after, limit, create=False, max_bytes=READ_PAGE_BYTES):
    """Up to ``limit`` events with seqNum > ``after``, ascending, and the head they were read at.

    A page holds about ``max_bytes`` of args at the most (and at least one
    event); ``Page.remaining`` still counts every event up to the head.
    PostgreSQL's driver still receives up to ``limit`` rows per read.

    With ``create``, an unknown store is created first, so that its (empty)
    page carries the backendId later pushes will be checked against.

    Rows are bounded by the head read first: every event up to the head is
    committed (the head moves in the same transaction), so a page is consistent
    without a read transaction — which on SQLite would queue behind writers.
    """
    location = _locate(store_id, create=create)
    if location is None:
        return Page(events=[], head=0, backend_id=None)
    with connections[location.database].cursor() as cursor:
        cursor.execute(_head_sql(location.database), [location.pk])
        stored = cursor.fetchone()
        if stored is None:
            _locations.pop(store_id)
            return Page(events=[], head=0, backend_id=None)
        head, backend_id = stored
        events, size = [], 0
        # The range ends at the last seqNum the page can hold (seqNums are contiguous), not only at the head: on
        # a table PostgreSQL has not analyzed yet, a range up to the head is planned as a scan of every event
        # left, sorted for each page, which made a long backlog's reads grow with its square. A table with a gap
        # (one adopted as it was found) is read up to the head when the shorter range finds nothing.
        for upper in dict.fromkeys((min(head, after + limit), head)):
            cursor.execute(_select_sql(cursor.db, location.table_name), [after, upper, limit])
            # Rows are taken as they come and the rest is left unread once the page is full (SQLite steps
            # its statement row by row; psycopg builds rows only as they are fetched).
            while size < max_bytes:
                rows = cursor.fetchmany(_FETCH_ROWS)
                if not rows:
                    break
                for row in rows:
                    events.append(StoredEvent._make(row))
                    size += len(row[3] or "")
                    if size >= max_bytes:
                        break
            if events:
                break
    return Page(events=events, head=head, backend_id=backend_id)


def head(store_id):
    """The store's head seqNum (0 for an unknown or empty store)."""
    return heads([store_id]).get(store_id, 0)


def heads(store_ids):
    """``{store_id: head}`` for the known stores among ``store_ids``, in one query per database."""
    by_database = collections.defaultdict(list)
    for store_id, alias in placement.databases_of(store_ids).items():
        by_database[alias].append(store_id)
    found = {}
    for alias, ids in by_database.items():
        found.update(Store.objects.using(alias).filter(store_id__in=ids).values_list("store_id", "head"))
    return found


def reset(store_id):
    """Delete every event of the store, set its head back to 0 and give it a new backendId."""
    store = get_store(store_id)
    if store is None:
        return
    alias = store._state.db
    _ensure_table(alias, store.table_name)
    stores = Store.objects.using(alias)
    with _local_writer(alias), transaction.atomic(using=alias):
        stores.select_for_update().filter(pk=store.pk).get()
        eventlog_model(store.table_name).objects.using(alias).all().delete()
        stores.filter(pk=store.pk).update(head=0, backend_id=new_backend_id(), updated_at=datetime.now(UTC))
    _locations.pop(store_id)


def delete(store_id):
    """Drop the store's table, its registry row and its placement."""
    store = get_store(store_id)
    if store is None:
        return
    alias = store._state.db
    with _local_writer(alias), transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        if _table_exists(alias, store.table_name):
            _run_drop_table(cursor, store.table_name)
        store.delete()
    with _local_writer(DEFAULT_DB_ALIAS):
        placement.forget(store_id)
    _forget_model(store.table_name)
    _locations.pop(store_id)


def note_client(store_id, generation):
    """Record that a client of ``generation`` ("0.3" or "0.4") connected; False if the store does not exist yet."""
    alias = placement.database_of(store_id)
    if alias is None:
        return False
    field = CLIENT_GENERATION_FIELDS[generation]
    with _local_writer(alias):
        updated = Store.objects.using(alias).filter(store_id=store_id).update(**{field: datetime.now(UTC)})
    return updated == 1


def ping():
    """Raise unless every store database answers a trivial query."""
    for alias in placement.store_databases():
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
