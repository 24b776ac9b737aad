"""On PostgreSQL, livesync's tables live in a schema of their own (``LIVESYNC["STORE_SCHEMA"]``), not the host's.

A fresh host database's ``migrate`` and its first stores, under a real daphne
process, leave the host's schema as ``migrate`` made it; tables an earlier
version made in the host's schema keep working where they are, and
``livesync_move_tables`` moves them while the server keeps using them.
"""

import asyncio
import io

import psycopg
import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection

from syncapp import storage
from syncapp.core import eventlog
from syncapp.storage import db, spares, stores, tables
from tests.support.chains import batch, no_args
from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database
from tests.support.v03_socket import close_all, make_batch, open_sockets, store_url

# livesync's tables by name: each store's eventlog table, and spare tables.
LIVESYNC_TABLES = "(starts_with(relname, 'eventlog_') OR starts_with(relname, 'livesync_spare_'))"


def _exists(quoted_table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [quoted_table])
        return cursor.fetchone()[0]


def _livesync_tables(inspector, schema):
    """Names of livesync's tables in ``schema`` (over a psycopg connection)."""
    rows = inspector.execute(
        f"SELECT relname FROM pg_class WHERE relkind = 'r' AND {LIVESYNC_TABLES} "
        "AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s)",
        [schema],
    )
    return {name for (name,) in rows}


async def test_a_fresh_databases_migrate_and_first_hundred_stores_leave_the_hosts_schema_clean(tmp_path):
    """The example project's settings (STORE_SCHEMA and SPARE_TABLES left as they are): ``migrate`` makes the
    store schema and no table in it; 100 new stores put their tables, and the spares made after them, there."""
    with postgres_database() as database_url:
        with psycopg.connect(database_url, autocommit=True) as inspector:
            assert _livesync_tables(inspector, "public") == set()
            assert inspector.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'livesync'").fetchone() == (1,)
            assert _livesync_tables(inspector, "livesync") == set()

            with DaphneServer(tmp_path / "daphne.log", {"DATABASE_URL": database_url}) as server:
                store_ids = [f"fresh-{number}" for number in range(100)]
                sockets = await open_sockets([(each, store_url(server.url, each)) for each in store_ids])
                outcomes = await asyncio.gather(*(sock.push(make_batch(sock.name, 1, 1, 0)) for sock in sockets))
                await close_all(sockets)
                assert all(outcome.acked for outcome in outcomes), [o.message for o in outcomes if not o.acked]
                spares = set()
                for _ in range(300):
                    spares = {name for name in _livesync_tables(inspector, "livesync") if name.startswith("livesync")}
                    if len(spares) == 64:
                        break
                    await asyncio.sleep(0.1)
                assert len(spares) == 64, server.log_tail()

            registered = {name for (name,) in inspector.execute("SELECT table_name FROM syncapp_store")}
            assert len(registered) == 100
            assert _livesync_tables(inspector, "public") == set()
            assert _livesync_tables(inspector, "livesync") == registered | spares


@pytest.mark.protocol
@pytest.mark.django_db(transaction=True)
class TestTablesOfAnEarlierVersion:
    """Versions before the store schema made every table in the connection's own schema (``public`` here)."""

    @pytest.fixture(autouse=True)
    def postgres_only(self):
        if connection.vendor != "postgresql":
            pytest.skip("schemas are PostgreSQL's")

    @staticmethod
    def _as_an_earlier_version_left_it(store_ids, spare=None):
        """The stores' tables (and a spare of that name) moved back into ``public``, and forgotten by this
        process."""
        with connection.cursor() as cursor:
            for store_id in store_ids:
                table = connection.ops.quote_name(storage.get_store(store_id).table_name)
                cursor.execute(f'ALTER TABLE "livesync".{table} SET SCHEMA public')
                stores._locations.pop(store_id)
            if spare is not None:
                tables._run_create_table(cursor, spare, keep_model=False)
                cursor.execute(f'ALTER TABLE "livesync".{connection.ops.quote_name(spare)} SET SCHEMA public')

    @staticmethod
    def _schemas_of(store_ids):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT s.store_id, n.nspname FROM syncapp_store s JOIN pg_class c ON c.relname = s.table_name "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE s.store_id = ANY(%s)",
                [list(store_ids)],
            )
            return dict(cursor.fetchall())

    async def test_are_used_where_they_are_then_moved_while_the_process_uses_them(self, store_id):
        pushed, read = f"{store_id}-pushed", f"{store_id}-read"
        for each in (pushed, read):
            await eventlog.commit(each, batch(1, 1))
        spare = spares.new_name(spares._spare_prefix("default"))
        await db.run(self._as_an_earlier_version_left_it, [pushed, read], spare)

        # Found where they are, by a process that looks them up now.
        for each in (pushed, read):
            await eventlog.commit(each, batch(2, 2, "in public"))
        assert await db.run(self._schemas_of, [pushed, read]) == {pushed: "public", read: "public"}

        out = io.StringIO()
        await db.run(call_command, "migrate", stdout=out)
        assert "3 livesync tables of database 'default' are outside schema 'livesync'" in out.getvalue()
        assert "manage.py livesync_move_tables --database=default" in out.getvalue()

        out = io.StringIO()
        await db.run(call_command, "livesync_move_tables", stdout=out)
        assert "default: moved 3 tables into schema 'livesync'." in out.getvalue()
        assert await db.run(self._schemas_of, [pushed, read]) == {pushed: "livesync", read: "livesync"}
        assert await db.run(storage.tables_to_move, "default") == []
        assert await db.run(_exists, f'"livesync"."{spare}"')

        # This process found them in public: a push and a read that miss them there find them moved.
        await eventlog.commit(pushed, batch(3, 3, "moved"))
        page = await db.run(storage.read_page, read, 0, 10)
        assert [(event.seq_num, event.client_id) for event in page.events] == [(1, "c"), (2, "in public")]
        page = await db.run(storage.read_page, pushed, 0, 10)
        assert [(event.seq_num, event.client_id) for event in page.events] == [(1, "c"), (2, "in public"), (3, "moved")]

        out = io.StringIO()
        await db.run(call_command, "livesync_move_tables", stdout=out)
        assert "default: moved 0 tables into schema 'livesync'." in out.getvalue()

    def test_are_reset_and_deleted_where_they_are(self, store_id):
        storage.append(store_id, batch(1, 3), no_args)
        self._as_an_earlier_version_left_it([store_id])
        storage.reset(store_id)
        assert storage.read_page(store_id, 0, 10).events == []
        storage.delete(store_id)
        assert not _exists(f'"public"."{tables.table_name_for(store_id)}"')


@pytest.mark.parametrize("schema", ["", 'live"sync', "s" * 64, 7])
def test_a_schema_name_livesync_cannot_write_as_given_is_an_error(settings, schema):
    settings.LIVESYNC = {**settings.LIVESYNC, "STORE_SCHEMA": schema}
    assert [error.id for error in run_checks() if error.id == "syncapp.E015"] == ["syncapp.E015"]


@pytest.mark.parametrize("schema", [None, "livesync", "Live Sync", "s" * 63])
def test_a_schema_name_postgresql_takes_passes(settings, schema):
    settings.LIVESYNC = {**settings.LIVESYNC, "STORE_SCHEMA": schema}
    assert [error.id for error in run_checks() if error.id == "syncapp.E015"] == []
