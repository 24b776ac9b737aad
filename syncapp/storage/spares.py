"""Empty eventlog tables made ahead of time, so that a new store's first push renames one instead of creating it.

On PostgreSQL ``CREATE TABLE`` for an eventlog (a heap, its primary key, a
TOAST table and its index: four files and a few dozen catalog rows) takes
1.5–6 ms, most of what a new store's first push costs; ``ALTER TABLE …
RENAME`` takes about 0.1 ms. So each store database keeps up to
``SPARE_TABLES`` empty eventlog tables, and a group of new stores takes spares
in the transaction that inserts their registry rows: a rollback gives them
back. Taken spares are made again in the background (``refill_spares``),
so a burst of new stores up to that size pays no ``CREATE TABLE`` on its
pushes' path; a sustained stream of new stores costs what it did. A store's
table keeps the primary-key index name its spare was made with.

Spares are found in the catalog by name (a range scan of ``pg_class``'s name
index), not listed in a table of their own: nothing to keep in step with the
tables, and a flushed or restored registry cannot orphan them. Their names carry
a digest of the eventlog's ``CREATE TABLE``, so spares made for other columns are
never taken. Two transactions never take the same spare: each takes its spares
under transaction-scoped advisory locks, skipping those another holds, then
locks the tables themselves without waiting (see ``take``).

Spares live in the store schema (``LIVESYNC["STORE_SCHEMA"]``), beside the
tables they become, and are first made when a database's first stores are
created, not at ``migrate``: a host that never creates a store has none.

Only on PostgreSQL: SQLite creates a table in well under a millisecond, and
renaming one rewrites its whole schema.
"""

import functools
import hashlib
import secrets

from django.db import DatabaseError, connections, transaction

from .. import conf
from .schema import qualified, store_schema
from .tables import _run_create_table, _unkept_model

NAME_START = "livesync_spare_"
# The first of the two advisory-lock keys spares are taken under ("lsyn"): apart from other users of advisory locks.
LOCK_CLASS = 0x6C73796E

# The store schema, or with none configured the one unqualified CREATE TABLE uses (compared by name:
# ``::regnamespace`` would fold its case).
_SCHEMA = "(SELECT oid FROM pg_namespace WHERE nspname = coalesce(%s, current_schema()))"

_TAKE_SQL = f"""
WITH spare AS MATERIALIZED (
    SELECT oid, relname FROM pg_class
    WHERE relnamespace = {_SCHEMA} AND relkind = 'r' AND relname >= %s AND relname < %s
)
SELECT relname FROM spare WHERE pg_try_advisory_xact_lock(%s, oid::int4) LIMIT %s
"""

_COUNT_SQL = f"""
SELECT count(*) FROM pg_class
WHERE relnamespace = {_SCHEMA} AND relkind = 'r' AND relname >= %s AND relname < %s
"""


def enabled(alias):
    """Whether database ``alias`` keeps spare tables (PostgreSQL with ``SPARE_TABLES`` above 0)."""
    return (conf.get("SPARE_TABLES") or 0) > 0 and connections[alias].vendor == "postgresql"


def prefix_for(create_table_sql):
    """The name prefix of spares made by ``create_table_sql`` (the eventlog's DDL for any one table name)."""
    return f"{NAME_START}{hashlib.sha256(create_table_sql.encode()).hexdigest()[:8]}_"


def new_name(prefix):
    return prefix + secrets.token_hex(8)


def name_range(prefix):
    """Names starting with ``prefix``, as bounds an index scan takes (the prefix ends in "_", followed by "`")."""
    return prefix, prefix[:-1] + "`"


def take(cursor, schema, prefix, count):
    """Up to ``count`` spares, locked for the caller's open transaction to rename; fewer when fewer are free.

    No spares when taking them fails, in a savepoint that leaves the caller's
    transaction as it was: a spare another session holds open (``pg_dump``
    reads every table) would make a rename wait for as long as it does, so the
    spares are locked without waiting, and the caller creates its tables
    instead. So does one that another transaction renamed a moment ago.
    """
    if count < 1:
        return []
    try:
        with transaction.atomic(using=cursor.db.alias):
            cursor.execute(_TAKE_SQL, [schema, *name_range(prefix), LOCK_CLASS, count])
            names = [name for (name,) in cursor.fetchall()]
            if names:
                quoted = ", ".join(cursor.db.ops.quote_name(qualified(schema, name)) for name in names)
                cursor.execute(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE NOWAIT")
    except DatabaseError:
        return []
    return names


def rename(cursor, schema, spare, table_name):
    """Rename a taken spare to a store's table name (in the spare's schema: a rename never moves a table)."""
    quote = cursor.db.ops.quote_name
    cursor.execute(f"ALTER TABLE {quote(qualified(schema, spare))} RENAME TO {quote(table_name)}")


def shortfall(alias, schema, prefix):
    """How many spares database ``alias`` lacks in ``schema``."""
    with connections[alias].cursor() as cursor:
        cursor.execute(_COUNT_SQL, [schema, *name_range(prefix)])
        (present,) = cursor.fetchone()
    return max(0, (conf.get("SPARE_TABLES") or 0) - present)


@functools.cache
def _spare_prefix(alias):
    """The name prefix of the spare tables (``syncapp.storage.spares``) whose columns are the eventlog's (the same in
    any schema: the DDL it digests names none)."""
    sql, _ = connections[alias].schema_editor().table_sql(_unkept_model(NAME_START))
    return prefix_for(sql)


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

    Run in the background (see ``syncapp.core.eventlog``), a few tables at a time so
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


def _make_spares(alias, most):
    """Make up to ``most`` of the spares ``alias`` lacks, each in a transaction of its own; return how many it
    lacked."""
    prefix = _spare_prefix(alias)
    missing = shortfall(alias, store_schema(alias), prefix)
    for _ in range(min(missing, most)):
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            _run_create_table(cursor, new_name(prefix), keep_model=False)
    return missing
