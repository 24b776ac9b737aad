"""Spare eventlog tables on PostgreSQL: a new store's table is renamed from one made ahead
(``syncapp.storage.spares``)."""

import asyncio

import pytest
from django.core.management import call_command
from django.db import connection

from syncapp import storage
from syncapp.core import eventlog
from syncapp.models import Store
from syncapp.storage import db, spares, statements, stores
from tests.support.chains import batch, no_args
from tests.support.databases import connect_to_test_database

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("spare tables are kept on PostgreSQL only")


@pytest.fixture
def spare_tables(settings):
    """Sets SPARE_TABLES and makes that many spares now; returns the oids of the spares present then."""

    def keep(count):
        settings.LIVESYNC = {**settings.LIVESYNC, "SPARE_TABLES": count}
        with connection.cursor() as cursor:
            for oid in _spare_oids():
                cursor.execute(f"DROP TABLE {_relation_name(oid)}")
        spares._spares_wanted.add("default")
        while storage.refill_spares():
            pass
        return _spare_oids()

    return keep


def _spare_oids():
    prefix = spares._spare_prefix("default")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT oid FROM pg_class WHERE relkind = 'r' AND relname >= %s AND relname < %s",
            list(spares.name_range(prefix)),
        )
        return {oid for (oid,) in cursor.fetchall()}


def _table_oid(store_id):
    stores._locations.pop(store_id)
    table = stores._locate(store_id, create=False).db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)::oid", [connection.ops.quote_name(table)])
        return cursor.fetchone()[0]


def _events(store_id):
    return [(event.seq_num, event.client_id) for event in storage.read_page(store_id, 0, 100).events]


def test_a_new_stores_table_is_a_spare_renamed(store_id, spare_tables):
    spare_oids = spare_tables(3)
    assert len(spare_oids) == 3
    storage.append(store_id, batch(1, 2), no_args)
    assert _table_oid(store_id) in spare_oids
    assert _spare_oids() == spare_oids - {_table_oid(store_id)}
    storage.append(store_id, batch(3, 3, "later"), no_args)
    assert _events(store_id) == [(1, "c"), (2, "c"), (3, "later")]
    table = connection.ops.quote_name(stores.known_location(store_id).db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} LIMIT 0")
        columns = [column[0] for column in cursor.description]
    assert columns == list(statements.EVENT_COLUMNS)


async def test_spares_taken_by_a_first_push_are_made_again_in_the_background(store_id, spare_tables):
    spare_oids = await db.run(spare_tables, 2)
    await eventlog.commit(store_id, batch(1, 1))
    for _ in range(100):
        present = await db.run(_spare_oids)
        if len(present) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(present) == 2
    assert present != spare_oids
    assert await db.run(_table_oid, store_id) in spare_oids


def test_a_group_of_more_new_stores_than_spares_creates_the_rest(store_id, spare_tables):
    spare_oids = spare_tables(2)
    names = [f"{store_id}.{number}" for number in range(5)]
    outcomes = storage.append_many([storage.PendingAppend(name, batch(1, 1), no_args) for name in names])
    assert all(isinstance(outcome, storage.Appended) for outcome in outcomes)
    assert len({_table_oid(name) for name in names} & spare_oids) == 2
    assert _spare_oids() == set()
    assert all(_events(name) == [(1, "c")] for name in names)


def test_a_spare_another_transaction_holds_is_skipped(store_id, spare_tables):
    """Two processes' new stores never take the same spare: one held by an open transaction is left to it."""
    spare_oids = spare_tables(2)
    prefix = spares._spare_prefix("default")
    with connect_to_test_database() as other:
        schema = storage.store_schema("default")
        arguments = [schema, *spares.name_range(prefix), spares.LOCK_CLASS, 1]
        (held,) = other.execute(spares._TAKE_SQL, arguments).fetchone()
        held_table = connection.ops.quote_name(spares.qualified(schema, held))
        held_oid = other.execute("SELECT to_regclass(%s)::oid", [held_table]).fetchone()[0]
        storage.append(store_id, batch(1, 1), no_args)
        assert _table_oid(store_id) == (spare_oids - {held_oid}).pop()
        storage.append(f"{store_id}.next", batch(1, 1), no_args)
        assert _table_oid(f"{store_id}.next") not in spare_oids
        other.rollback()
    assert _spare_oids() == {held_oid}


def test_a_spare_whose_rename_fails_leaves_the_store_to_be_created_as_without_spares(store_id, spare_tables):
    """A table already under the store's name (its registry row was lost) makes the rename fail: the group
    rolls back, spares included, and the table is adopted with its events, as it would be without spares."""
    storage.append(store_id, batch(1, 3), no_args)
    Store.objects.filter(store_id=store_id).delete()
    stores._locations.pop(store_id)
    spare_oids = spare_tables(1)
    storage.append(store_id, batch(4, 4, "after"), no_args)
    assert _events(store_id) == [(1, "c"), (2, "c"), (3, "c"), (4, "after")]
    assert _table_oid(store_id) not in spare_oids
    assert _spare_oids() == spare_oids


def test_stores_whose_names_sanitize_alike_take_spares_of_their_own(store_id, spare_tables):
    dashed, underscored = f"{store_id}-x", f"{store_id}_x"
    storage.append(dashed, batch(1, 2, "dash"), no_args)
    spare_tables(1)
    storage.append(underscored, batch(1, 1, "underscore"), no_args)
    assert storage.get_store(underscored).table_name.startswith(storage.get_store(dashed).table_name + "_")
    assert _events(dashed) == [(1, "dash"), (2, "dash")]
    assert _events(underscored) == [(1, "underscore")]


def test_spares_made_for_other_columns_are_never_taken(store_id, spare_tables):
    stray = connection.ops.quote_name(
        spares.qualified(storage.store_schema("default"), spares.new_name(spares.NAME_START + "00000000_"))
    )
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {stray} (unrelated integer)")
    spare_oids = spare_tables(1)
    names = [f"{store_id}.{number}" for number in range(2)]
    storage.append_many([storage.PendingAppend(name, batch(1, 1), no_args) for name in names])
    assert {_table_oid(name) for name in names} & spare_oids == spare_oids
    assert all(_events(name) == [(1, "c")] for name in names)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [stray])
        assert cursor.fetchone()[0]


def test_a_spare_another_session_has_open_is_not_waited_for(store_id, spare_tables):
    """A backup (``pg_dump`` reads every table) must not hold new stores up: their tables are created instead."""
    (spare_oid,) = spare_tables(1)
    with connect_to_test_database() as other:
        other.execute(f"LOCK TABLE {_relation_name(spare_oid)} IN ACCESS SHARE MODE")
        storage.append(store_id, batch(1, 1), no_args)
        assert _table_oid(store_id) != spare_oid
        other.rollback()
    assert _events(store_id) == [(1, "c")]
    assert _spare_oids() == {spare_oid}


def test_a_refill_makes_a_few_spares_per_call_until_none_lack(spare_tables, settings):
    """A refill gives its database thread back after SPARES_PER_REFILL tables, so pushes waiting for the
    threads get their turn, and says whether it has more to make."""
    spare_tables(0)
    wanted = spares.SPARES_PER_REFILL + 2
    settings.LIVESYNC = {**settings.LIVESYNC, "SPARE_TABLES": wanted}
    spares._spares_wanted.add("default")
    assert storage.refill_spares() is True
    assert len(_spare_oids()) == spares.SPARES_PER_REFILL
    assert storage.refill_spares() is False
    assert len(_spare_oids()) == wanted


@pytest.mark.parametrize("store_schema", ["Livesync Spares", None])
def test_spares_work_in_a_schema_whose_name_has_capitals(store_id, spare_tables, settings, store_schema):
    """In a store schema named with capitals, and (STORE_SCHEMA None) in the one the connection's search_path
    gives."""
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "Livesync Spares"')
        if store_schema is None:
            cursor.execute('SET search_path TO "Livesync Spares", public')
    settings.LIVESYNC = {**settings.LIVESYNC, "STORE_SCHEMA": store_schema}
    try:
        spare_oids = spare_tables(2)
        assert len(spare_oids) == 2
        assert {_schema_of(oid) for oid in spare_oids} == {"Livesync Spares"}
        storage.append(store_id, batch(1, 1), no_args)
        assert _table_oid(store_id) in spare_oids
        assert _events(store_id) == [(1, "c")]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET search_path TO DEFAULT")
            cursor.execute('DROP SCHEMA "Livesync Spares" CASCADE')


def _schema_of(oid):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE oid = (SELECT relnamespace FROM pg_class WHERE oid = %s)", [oid]
        )
        return cursor.fetchone()[0]


def _relation_name(oid):
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::regclass::text", [oid])
        return cursor.fetchone()[0]


def test_no_spares_are_kept_when_turned_off(store_id, spare_tables):
    assert spare_tables(0) == set()
    storage.append(store_id, batch(1, 1), no_args)
    assert _events(store_id) == [(1, "c")]
    assert not storage.spares_wanted()
    storage.refill_spares()
    assert _spare_oids() == set()


async def test_migrate_makes_no_spares_and_a_databases_first_stores_ask_for_them(store_id, spare_tables, settings):
    """A host that never creates a store gets no spare tables; its first new stores create their tables, and
    the spares are made in the background for the stores after them."""
    await db.run(spare_tables, 0)
    settings.LIVESYNC = {**settings.LIVESYNC, "SPARE_TABLES": 3}
    await db.run(call_command, "migrate", verbosity=0)
    assert await db.run(_spare_oids) == set()
    await eventlog.commit(store_id, batch(1, 1))
    for _ in range(100):
        spare_oids = await db.run(_spare_oids)
        if len(spare_oids) == 3:
            break
        await asyncio.sleep(0.05)
    assert len(spare_oids) == 3
    await eventlog.commit(f"{store_id}.next", batch(1, 1))
    assert await db.run(_table_oid, f"{store_id}.next") in spare_oids


def test_flush_makes_no_spares(spare_tables, settings):
    """``flush`` sends migrate's signal too; emptying the tables is all it is asked to do."""
    spare_tables(0)
    settings.LIVESYNC = {**settings.LIVESYNC, "SPARE_TABLES": 3}
    call_command("flush", interactive=False, verbosity=0)
    assert _spare_oids() == set()
