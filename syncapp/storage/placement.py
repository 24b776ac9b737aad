"""Which database holds each store, over the aliases of ``LIVESYNC["STORE_DATABASES"]``.

A store lives wholly in one database, its registry row and its eventlog table,
so that a push's compare-and-set and insert are one transaction of that
database. A new store goes to the alias that rendezvous hashing of its storeId
picks (the same in every process, whatever the order the aliases are listed
in), and a ``StorePlacement`` row in the default database records where it
went, so adding an alias later moves no existing store: only new stores can
land on it. The row's id becomes the store's id, unique across databases.

A placement never changes while its store exists; each process keeps the
STORE_CACHE_SIZE used last. With a single store database nothing needs
looking up: the placement is only recorded, for the day a second one is added.
"""

import hashlib

from django.db import DEFAULT_DB_ALIAS, connections

from .. import conf
from ..models import StorePlacement
from .lru import BoundedCache

# storeId -> alias, for stores known to exist.
_databases = BoundedCache(conf.store_cache_size)


def store_databases():
    """The aliases stores live in (``LIVESYNC["STORE_DATABASES"]``)."""
    return conf.store_databases()


def home(store_id, aliases=None):
    """The alias of ``aliases`` (by default the store databases) a new store goes to: the highest random
    weight of (alias, storeId), so adding an alias takes new stores from every other alias evenly and
    changes nothing in how the others share the rest."""
    return max(aliases or store_databases(), key=lambda alias: hashlib.sha256(f"{alias}\0{store_id}".encode()).digest())


def database_of(store_id):
    """The alias holding ``store_id``, or None when no store of that id was placed (with a single store
    database: that one, whether or not the store exists)."""
    return databases_of([store_id]).get(store_id)


def databases_of(store_ids):
    """``{store_id: alias}`` for the placed stores among ``store_ids``, in one query at most."""
    aliases = store_databases()
    if len(aliases) == 1:
        return dict.fromkeys(store_ids, aliases[0])
    found = {}
    unknown = []
    for store_id in store_ids:
        alias = _databases.get(store_id)
        if alias is None:
            unknown.append(store_id)
        else:
            found[store_id] = alias
    if unknown:
        rows = StorePlacement.objects.using(DEFAULT_DB_ALIAS).filter(store_id__in=unknown)
        for store_id, alias in rows.values_list("store_id", "database"):
            _databases.put(store_id, alias)
            found[store_id] = alias
    return found


def destinations(store_ids):
    """``{store_id: alias}`` for every storeId: where it is, or for an unplaced one where it would go."""
    placed = databases_of(store_ids)
    return {store_id: placed.get(store_id) or home(store_id) for store_id in store_ids}


def claim(store_ids, alias):
    """Record that ``store_ids`` live in ``alias``: ``{store_id: id}`` for those placed there, by this call
    or earlier; a storeId placed in another database meanwhile is left out.

    Run inside the transaction that creates the stores when ``alias`` is the
    default database (a store that fails to be created leaves no placement);
    elsewhere the placement commits first, and a creation that fails leaves a
    placement its retry reuses. One statement when nothing was placed yet.
    """
    claimed = _place_new(store_ids, alias)
    missing = [store_id for store_id in store_ids if store_id not in claimed]
    if missing:
        placed = StorePlacement.objects.using(DEFAULT_DB_ALIAS).filter(store_id__in=missing, database=alias)
        claimed.update(placed.values_list("store_id", "id"))
    if len(store_databases()) > 1:
        for store_id in claimed:
            _databases.put(store_id, alias)
    return claimed


def _place_new(store_ids, alias):
    """Insert the placements that do not exist yet; ``{store_id: id}`` of those inserted.

    ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on PostgreSQL and SQLite (3.35+): a
    storeId placed already is skipped without an error, so no savepoint is
    needed inside the caller's transaction. Elsewhere Django's ``bulk_create``
    ignores conflicts, and the ids are read back.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor not in ("postgresql", "sqlite") or not connection.features.can_return_rows_from_bulk_insert:
        StorePlacement.objects.using(DEFAULT_DB_ALIAS).bulk_create(
            [StorePlacement(store_id=store_id, database=alias) for store_id in store_ids], ignore_conflicts=True
        )
        return {}
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}, {}) VALUES {} ON CONFLICT ({}) DO NOTHING RETURNING {}, {}".format(
        quote(StorePlacement._meta.db_table),
        quote("store_id"),
        quote("database"),
        ", ".join(["(%s, %s)"] * len(store_ids)),
        quote("store_id"),
        quote("store_id"),
        quote("id"),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for store_id in store_ids for value in (store_id, alias)])
        return dict(cursor.fetchall())


def uncache(store_id):
    """Drop what this process remembers of the store's placement (another process moved it: deleted and
    made it again elsewhere)."""
    _databases.pop(store_id)


def forget(store_id):
    """Drop the placement of a deleted store (a store made again later is placed anew)."""
    StorePlacement.objects.using(DEFAULT_DB_ALIAS).filter(store_id=store_id).delete()
    _databases.pop(store_id)
