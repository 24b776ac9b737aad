"""The store registry as storage uses it: where each store's table is, creating stores (with their tables,
or spares renamed), reset and delete.

The cost of a store does not grow with the number of stores: on SQLite and
PostgreSQL nothing here lists the database's tables or scans the registry.
Name collisions are found by the database itself (the registry's unique
constraints, ``CREATE TABLE`` failing). Stores may be spread over several
databases (``syncapp.storage.placement``): each function finds the store's
database first, and runs there.
"""

import collections
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    ProgrammingError,
    connections,
    models,
    transaction,
)

from .. import conf
from ..models import Store, new_backend_id
from . import placement, spares
from .backends import _local_writer, _table_key
from .lru import BoundedCache
from .schema import _find_table, qualified, store_schema
from .spares import _spare_prefix, _spares_wanted
from .statements import CLIENT_GENERATION_FIELDS
from .tables import (
    _ensure_table,
    _forget_model,
    _is_orphan,
    _run_create_table,
    _run_drop_table,
    eventlog_model,
    table_name_candidates,
    table_name_for,
)


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
    """A store's row id, its table (as the registry names it, and as statements name it: ``db_table``, see
    ``_find_table``), backendId and database."""

    pk: int
    table_name: str
    backend_id: str
    database: str
    db_table: str

    @classmethod
    def of(cls, store, db_table):
        return cls(store.pk, store.table_name, store.backend_id, store._state.db, db_table)


# storeId -> where its events live, for the STORE_CACHE_SIZE stores used last. A
# store's row and table never move while it exists (but for an earlier version's
# table moved into the store schema, see ``_moved_away``), so an entry is looked
# up once while the store is in use; delete() forgets it, and a store deleted by
# another process is noticed when its row is missing. The backendId changes on
# reset: append() checks it in its compare-and-set, so a stale cached one costs a
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
    store = get_store(store_id)
    if store is None:
        if not create:
            return None
        store = _create_store(store_id)
    location = _Location.of(store, _ensure_table(store._state.db, store.table_name))
    _locations.put(store_id, location)
    return location


def _moved_away(location, error):
    """Whether ``error`` (met by a statement on the store's table) means that the table was moved since the
    location was looked up: an earlier version's table, moved into the store schema by
    ``livesync_move_tables``. The location is then looked up again, and the statement run where it is now.
    A table that is gone (dropped by hand) is no move: the statement's error stands."""
    if not isinstance(error, ProgrammingError):
        return False
    found = _find_table(location.database, location.table_name)
    return found is not None and found != location.db_table


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
            schema, keeps_spares = store_schema(alias), spares.enabled(alias)
            taken = spares.take(cursor, schema, _spare_prefix(alias), len(created)) if keeps_spares else []
            for store, spare in itertools.zip_longest(created, taken):
                if spare is None:
                    _run_create_table(cursor, store.table_name)
                else:
                    spares.rename(cursor, schema, spare, store.table_name)
    except DatabaseError:
        return
    if keeps_spares and created:
        # The first new stores of a database ask for its first spares too.
        _spares_wanted.add(alias)
    for store in created:
        _locations.put(store.store_id, _Location.of(store, qualified(schema, store.table_name)))


def _adopt_existing_events(store, db_table):
    """A new Store row over a table that already holds events takes their head.

    That happens when the registry row was lost or removed by hand while the
    table stayed; starting at head 0 would make every later push collide.
    """
    alias = store._state.db
    events = eventlog_model(db_table).objects.using(alias)
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
                found = _find_table(alias, table_name)
                if found is None:
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
                    _adopt_existing_events(store, found)
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


def _refresh(store_id):
    """The store's location read anew (None if it no longer exists)."""
    _locations.pop(store_id)
    return _locate(store_id, create=False)


def reset(store_id):
    """Delete every event of the store, set its head back to 0 and give it a new backendId."""
    store = get_store(store_id)
    if store is None:
        return
    alias = store._state.db
    db_table = _ensure_table(alias, store.table_name)
    stores = Store.objects.using(alias)
    with _local_writer(alias), transaction.atomic(using=alias):
        stores.select_for_update().filter(pk=store.pk).get()
        eventlog_model(db_table).objects.using(alias).all().delete()
        stores.filter(pk=store.pk).update(head=0, backend_id=new_backend_id(), updated_at=datetime.now(UTC))
    _locations.pop(store_id)


def delete(store_id):
    """Drop the store's table, its registry row and its placement."""
    store = get_store(store_id)
    if store is None:
        return
    alias = store._state.db
    with _local_writer(alias), transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        db_table = _find_table(alias, store.table_name)
        if db_table is not None:
            _run_drop_table(cursor, db_table)
        store.delete()
    with _local_writer(DEFAULT_DB_ALIAS):
        placement.forget(store_id)
    if db_table is not None:
        _forget_model(db_table)
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
