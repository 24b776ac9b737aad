"""Where the eventlog tables live: on PostgreSQL a schema of their own (``LIVESYNC["STORE_SCHEMA"]``), named
in every statement, so that the host's connections and its default schema stay as they were, whatever pooler
sits in between (a ``search_path`` set on a shared connection would change what the host's own statements
find). A table an earlier version made in the connection's own schema is found where it is until
``manage.py livesync_move_tables`` moves it (``syncapp.storage.moving``).
"""

from django.db import connections

from .. import conf
from .backends import _operations, _table_key


def qualified(schema, table_name):
    """A table's name as ``quote_name`` and a model's ``db_table`` take it: ``schema"."table``, which quoting
    makes ``"schema"."table"`` (as Django users name a table in another schema); the bare name for the
    connection's own schema (``schema`` None)."""
    return table_name if schema is None else f'{schema}"."{table_name}'


def store_schema(alias):
    """The schema database ``alias`` makes eventlog and spare tables in: ``LIVESYNC["STORE_SCHEMA"]`` on
    PostgreSQL, None (the connection's own) elsewhere or when that is None."""
    if _operations(alias).connection.vendor != "postgresql":
        return None
    return conf.get("STORE_SCHEMA")


# The schema of the table a store's eventlog is in: the store schema's (first argument), else the one an
# unqualified name finds (an earlier version's table, not moved yet).
_FIND_TABLE_SQL = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = coalesce(to_regclass(%s), to_regclass(%s))
"""


def _find_table(alias, table_name):
    """Where a store's table is, as ``db_table`` (see ``spares.qualified``), or None when the database has no
    such table; on SQLite in any case. One catalog lookup by name.

    On PostgreSQL, in the store schema, else in the connection's own schema,
    where versions before the store schema made it: such a table is used
    where it is until it is moved (``manage.py livesync_move_tables``).
    """
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            quote, schema = connection.ops.quote_name, store_schema(alias)
            cursor.execute(_FIND_TABLE_SQL, [quote(qualified(schema, table_name)), quote(table_name)])
            found = cursor.fetchone()
            if found is None:
                return None
            # Named by its schema, wherever it was found: unqualified only when no store schema is set.
            return qualified(None if schema is None else found[0], table_name)
        if connection.vendor == "sqlite":
            cursor.execute("SELECT 1 FROM pragma_table_info(%s) LIMIT 1", [table_name])
            return table_name if cursor.fetchone() is not None else None
    # Other databases: Django's introspection, which lists every table.
    names = connection.introspection.table_names()
    found = _table_key(connection, table_name) in {_table_key(connection, name) for name in names}
    return table_name if found else None


def create_store_schema(alias):
    """Create the store schema in database ``alias`` unless it exists (``migrate`` does); whether the
    database has one (PostgreSQL with ``STORE_SCHEMA`` set).

    Looked up first: ``CREATE SCHEMA IF NOT EXISTS`` needs the CREATE privilege on the database even when the
    schema exists, which a role whose schema an administrator made may lack.
    """
    schema = store_schema(alias)
    if schema is None:
        return False
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(schema)}")
    return True
