"""Eventlog tables and their models: the names, the columns, ``CREATE TABLE`` and ``DROP TABLE``.

Each store's events live in ``eventlog_<PERSISTENCE_FORMAT_VERSION>_<storeId>``
with exactly the reference's columns, so a D1 table maps onto it 1:1. The model
class of a table is built at run time in a private ``Apps()`` registry (as
Django's ``MigrationRecorder`` does), so these models never reach migrations or
the global app registry. What a process keeps per table is bounded
(``syncapp.storage.lru``).
"""

import hashlib
import re
import secrets
import threading

from django.apps.registry import Apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction

from ..models import Store
from .backends import _local_writer
from .lru import BoundedCache
from .schema import _find_table, qualified, store_schema

# The reference's storage format version (``PERSISTENCE_FORMAT_VERSION`` in
# @livestore/sync-cf 0.3.1); part of every eventlog table name.
PERSISTENCE_FORMAT_VERSION = 7
TABLE_PREFIX = f"eventlog_{PERSISTENCE_FORMAT_VERSION}_"

_eventlog_apps = Apps()
_lock = threading.Lock()


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


def _run_create_table(cursor, table_name, keep_model=True):
    """``CREATE TABLE`` for an eventlog table in the store schema, as Django's schema editor writes it for the
    table's model.

    Run as plain SQL in the caller's transaction, together with the store's
    row. Entering SQLite's schema editor would refuse to run inside a
    transaction, and on the way out runs ``PRAGMA foreign_key_check``, which
    walks every table in the database.

    ``keep_model=False`` (a spare table's): the model class built for the SQL
    is not kept, so it takes no store's place in the cache of models.
    """
    db_table = qualified(store_schema(cursor.db.alias), table_name)
    model = eventlog_model(db_table) if keep_model else _unkept_model(db_table)
    sql, params = cursor.db.schema_editor().table_sql(model)
    cursor.execute(sql, params or None)


def _unkept_model(db_table):
    with _lock:
        model = _build_model(db_table)
        _unregister(db_table, model)
    return model


def _run_drop_table(cursor, db_table):
    cursor.execute(cursor.db.schema_editor().sql_delete_table % {"table": cursor.db.ops.quote_name(db_table)})


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


def eventlog_model(db_table):
    """The model class mapped onto one eventlog table, named as ``_find_table`` gives it (kept for the
    MODEL_CACHE_SIZE tables used last).

    A class fits the table of that name in any database; query it ``.using()`` the store's.
    """
    model = _eventlog_models.get(db_table)
    if model is not None:
        return model
    with _lock:
        model = _eventlog_models.get(db_table)
        if model is None:
            model = _build_model(db_table)
            _eventlog_models.put(db_table, model)
    return model


def events_of(store):
    """The store's events as a queryset of its database, wherever its table is (see ``_find_table``)."""
    alias = store._state.db
    db_table = _find_table(alias, store.table_name) or qualified(store_schema(alias), store.table_name)
    return eventlog_model(db_table).objects.using(alias)


def _forget_model(db_table):
    with _lock:
        model = _eventlog_models.pop(db_table)
        if model is not None:
            _unregister(db_table, model)


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


def _build_model(table):
    class Meta:
        apps = _eventlog_apps
        app_label = "syncapp_eventlog"
        db_table = table

    attrs = {"__module__": __name__, "Meta": Meta, **_event_fields()}
    class_name = "Eventlog_" + hashlib.sha256(table.encode()).hexdigest()[:16]
    return type(class_name, (models.Model,), attrs)


def _ensure_table(alias, table_name):
    """Where a registered store's eventlog table is (see ``_find_table``), created in the store schema
    unless it exists; safe when several processes race.

    A store's row and table are created, and deleted, in one transaction, so
    the table is missing only when someone dropped it by hand (or the store
    was created by a version that made them one after the other).
    """
    return _find_table(alias, table_name) or _create_table(alias, table_name)


def _create_table(alias, table_name):
    try:
        with _local_writer(alias), transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            _run_create_table(cursor, table_name)
    except DatabaseError:
        # Another process created it between our look and our CREATE TABLE.
        found = _find_table(alias, table_name)
        if found is None:
            raise
        return found
    return qualified(store_schema(alias), table_name)
