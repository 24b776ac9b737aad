"""Moving the tables an earlier version made in the connection's own schema into the store schema
(``manage.py livesync_move_tables``), one table per transaction, while servers keep using them.
"""

from django.db import connections, transaction

from ..models import Store
from . import spares
from .schema import qualified, store_schema

# Tables an earlier version made in the connection's own schema: the stores' (by the registry) and spares.
_TABLES_TO_MOVE_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND n.nspname <> %s AND c.relkind = 'r'
AND (c.relname IN (SELECT {table_name} FROM {stores}) OR (c.relname >= %s AND c.relname < %s))
ORDER BY c.relname
"""


def tables_to_move(alias):
    """The eventlog and spare tables of database ``alias`` outside the store schema, where versions before it
    made them (the connection's own schema), as ``db_table``; none without a store schema."""
    schema = store_schema(alias)
    if schema is None:
        return []
    connection = connections[alias]
    quote = connection.ops.quote_name
    sql = _TABLES_TO_MOVE_SQL.format(table_name=quote("table_name"), stores=quote(Store._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [schema, *spares.name_range(spares.NAME_START)])
        return [qualified(namespace, name) for namespace, name in cursor.fetchall()]


# How long moving one table waits for its lock (a long read of the table holds it, e.g. ``pg_dump``) before
# it is left for a later run: statements on the table queue behind the waiting move.
MOVE_LOCK_TIMEOUT = "2s"


def move_table(alias, db_table):
    """Move one of ``tables_to_move`` into the store schema, in a transaction of its own.

    OperationalError when its lock was not free within MOVE_LOCK_TIMEOUT
    (nothing moved). A process that found the table where it was looks it
    up again when its next statement misses it (see ``_moved_away``).
    """
    connection = connections[alias]
    quote = connection.ops.quote_name
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{MOVE_LOCK_TIMEOUT}'")
        cursor.execute(f"ALTER TABLE {quote(db_table)} SET SCHEMA {quote(store_schema(alias))}")
