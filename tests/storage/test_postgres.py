"""Pushes to a store the process knows, on PostgreSQL: one statement on the event loop (``syncapp.postgres``)."""

import asyncio
import threading

import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import Cursor
from django.db.backends.signals import connection_created
from psycopg import IsolationLevel

from syncapp import storage
from syncapp.core import eventlog
from syncapp.protocol import wire
from syncapp.storage import db, postgres, stores
from tests.support.chains import batch, no_args, push_what_the_fast_path_cannot_take
from tests.support.databases import connect_to_test_database

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("the event-loop push is PostgreSQL's")


@pytest.fixture
async def kept_connections():
    """CONN_MAX_AGE None for the test (the suite's 0 closes each connection after its push); afterwards every
    connection opened meanwhile is closed, the database threads' too, so the test database can be dropped."""
    settings = connections.settings["default"]
    saved = settings["CONN_MAX_AGE"]
    settings["CONN_MAX_AGE"] = None
    yield
    settings["CONN_MAX_AGE"] = saved
    await postgres.close()
    threads = db.database_threads()
    all_threads_busy = threading.Barrier(threads)

    def close_this_threads_connections():
        all_threads_busy.wait(timeout=5)
        connections.close_all()

    await asyncio.gather(*(db.run(close_this_threads_connections) for _ in range(threads)))


async def _known_store(store_id, head):
    """A store created through the database threads, as a store's first push is, and known to the process."""
    await db.run(storage.append, store_id, batch(1, head), no_args)
    assert stores.known_location(store_id) is not None


async def _stored(store_id):
    page = await db.run(storage.read_page, store_id, 0, 100)
    return [(event.seq_num, event.client_id) for event in page.events]


async def _other_sessions():
    """Backend pids connected to the test database, but for the asking connection (the test process's own)."""
    with connect_to_test_database() as other:
        rows = other.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {row[0] for row in rows}


async def test_a_push_to_a_known_store_is_committed_before_it_returns(store_id):
    await _known_store(store_id, 2)
    appended = await eventlog.commit(store_id, batch(3, 4, "loop"))
    assert appended.already_stored == 0
    table = connection.ops.quote_name(stores.known_location(store_id).db_table)
    with connect_to_test_database() as other:
        rows = other.execute(f'SELECT "seqNum", "clientId" FROM {table} ORDER BY "seqNum"').fetchall()
    assert rows == [(1, "c"), (2, "c"), (3, "loop"), (4, "loop")]


async def test_pushes_the_statement_cannot_take_are_decided_as_before(store_id):
    """A stale parent, a retry of stored events and a broken chain move nothing on the event loop."""
    await _known_store(store_id, 3)
    await push_what_the_fast_path_cannot_take(store_id)
    assert await _stored(store_id) == [(1, "c"), (2, "c"), (3, "c"), (4, "new")]


async def test_a_push_from_before_a_reset_is_refused(store_id):
    await _known_store(store_id, 2)
    old_backend_id = stores.known_location(store_id).backend_id
    await db.run(storage.reset, store_id)
    await _known_store(store_id, 1)
    with pytest.raises(storage.BackendIdMismatch):
        await eventlog.commit(store_id, batch(2, 2), backend_id=old_backend_id)
    assert await _stored(store_id) == [(1, "c")]


async def test_a_connection_the_server_dropped_costs_no_push(store_id, kept_connections):
    """After PostgreSQL ended the event loop's connection (a restart, an idle timeout), the next push still
    succeeds, once."""
    await _known_store(store_id, 1)
    before = await _other_sessions()
    await eventlog.commit(store_id, batch(2, 2))
    opened = await _other_sessions() - before
    assert len(opened) == 1
    with connect_to_test_database() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [opened.pop()])
    await eventlog.commit(store_id, batch(3, 3, "after"))
    assert await _stored(store_id) == [(1, "c"), (2, "c"), (3, "after")]


async def test_connections_follow_conn_max_age(store_id, kept_connections):
    """None keeps one connection for every push; 0 (the suite's setting) closes it after each."""
    await _known_store(store_id, 1)
    before = await _other_sessions()
    for seq_num in (2, 3, 4):
        await eventlog.commit(store_id, batch(seq_num, seq_num))
    assert len(await _other_sessions() - before) == 1
    connections.settings["default"]["CONN_MAX_AGE"] = 0
    await eventlog.commit(store_id, batch(5, 5))
    assert await _other_sessions() - before == set()


async def test_a_push_whose_rows_cannot_be_inserted_fails_alone_and_the_next_push_is_stored(store_id, kept_connections):
    """A row put in the table by hand fails the push's insert: no head moves (the general path decides the push
    again, and refuses it), and the next push on the event loop is stored."""
    await _known_store(store_id, 1)
    await _known_store(f"{store_id}.next", 1)
    await eventlog.commit(f"{store_id}.next", batch(2, 2))
    table = connection.ops.quote_name(stores.known_location(store_id).db_table)
    with connect_to_test_database() as other:
        other.execute(
            f'INSERT INTO {table} ("seqNum", "parentSeqNum", "name", "createdAt", "clientId", "sessionId") '
            "VALUES (2, 1, 'v1.ByHand', '2026-01-01T00:00:00.000Z', 'hand', 'hand')"
        )
    with pytest.raises(eventlog.StoreUnavailable):
        await eventlog.commit(store_id, batch(2, 2, "pusher"))
    assert await db.run(storage.head, store_id) == 1
    await eventlog.commit(f"{store_id}.next", batch(3, 3, "next"))
    assert await _stored(f"{store_id}.next") == [(1, "c"), (2, "c"), (3, "next")]


@pytest.mark.parametrize("threshold, prepared", [(None, False), (2, True)])
async def test_push_statements_are_prepared_as_the_databases_options_say(
    store_id, kept_connections, monkeypatch, threshold, prepared
):
    """Django's ``OPTIONS["prepare_threshold"]``: unset, nothing is prepared (any connection pooler accepts that);
    a threshold prepares a store's push statement once it ran that often on a connection."""
    monkeypatch.setitem(connections.settings["default"]["OPTIONS"], "prepare_threshold", threshold)
    await postgres.close()
    await _known_store(store_id, 1)
    for seq_num in (2, 3, 4):
        await eventlog.commit(store_id, batch(seq_num, seq_num))
    (event_loop_connection,) = postgres._pool("default")._idle
    cursor = await event_loop_connection.execute("SELECT statement FROM pg_prepared_statements", prepare=False)
    statements = [row[0] for row in await cursor.fetchall()]
    table = stores.known_location(store_id).table_name
    assert any(table in statement for statement in statements) is prepared, statements
    assert await _stored(store_id) == [(1, "c"), (2, "c"), (3, "c"), (4, "c")]


@pytest.mark.parametrize("length", [1, 6, 7, 100])
async def test_every_batch_length_is_stored_exactly(store_id, length):
    """Short batches go as one parameter per value, longer ones as one JSON array of rows: the same rows."""
    await _known_store(store_id, 1)
    texts = [
        '{"text":"quote \\" and backslash \\\\, NUL escaped \\u0000"}',
        '{"text":"ünïcödé ✓\u2028, {braces}, [brackets], \'$1\' %s"}',
        None,
    ]
    pushed = [
        wire.Event(
            name=f"v1.E{n}",
            args=wire.UNSET if texts[n % 3] is None else wire.Raw(texts[n % 3].encode()),
            seqNum=n,
            parentSeqNum=n - 1,
            clientId=f"client-{n}",
            sessionId="session",
        )
        for n in range(2, 2 + length)
    ]
    await eventlog.commit(store_id, pushed)
    page = await db.run(storage.read_page, store_id, 1, 200)
    assert [(e.seq_num, e.parent_seq_num, e.name, e.args, e.client_id) for e in page.events] == [
        (e.seqNum, e.parentSeqNum, e.name, wire.args_text(e), e.clientId) for e in pushed
    ]


async def _known_stores(store_id, count):
    store_ids = [f"{store_id}-{n}" for n in range(count)]
    for each in store_ids:
        await _known_store(each, 1)
    return store_ids


def _inserting_transactions(store_ids):
    """The transactions that inserted the stores' events after their first (``xmin`` of each row)."""
    with connect_to_test_database() as other:
        return {
            row[0]
            for each in store_ids
            for row in other.execute(
                f"SELECT xmin::text FROM {connection.ops.quote_name(stores.known_location(each).db_table)} "
                'WHERE "seqNum" > 1'
            )
        }


@pytest.fixture
def group_sizes(monkeypatch):
    """How many statements each run of the event loop's connections carried, in order."""
    sizes = []
    execute_together = postgres._execute_together

    async def recorded(connection, statements):
        sizes.append(len(statements))
        return await execute_together(connection, statements)

    monkeypatch.setattr(postgres, "_execute_together", recorded)
    return sizes


async def test_pushes_waiting_for_a_connection_are_committed_together(store_id, group_sizes):
    """Pushes that arrive while another runs go in one transaction: fewer commits than pushes, each
    acknowledged with what it stored."""
    assert db.database_threads() < 20
    store_ids = await _known_stores(store_id, 20)
    # Bound on the client in a group: text that must be quoted (or would be a placeholder) is stored as sent.
    texts = ['{"text":"it\'s \\"quoted\\" \\\\ %s %(x)s"}', '{"text":"\'); DROP TABLE x; --"}', '{"text":"ünï ✓"}']
    pushed = {
        each: [
            wire.Event(
                name="v1.E",
                args=wire.Raw(texts[(n + seq_num) % 3].encode()),
                seqNum=seq_num,
                parentSeqNum=seq_num - 1,
                clientId=each,
                sessionId="s",
            )
            # Every other push long enough to go as one JSON parameter: both forms join a group.
            for seq_num in range(2, 4 if n % 2 else 12)
        ]
        for n, each in enumerate(store_ids)
    }
    appended = await asyncio.gather(*(eventlog.commit(each, pushed[each]) for each in store_ids))
    assert all(each.already_stored == 0 for each in appended)
    for each in store_ids:
        page = await db.run(storage.read_page, each, 1, 10)
        assert [(e.seq_num, e.args, e.client_id) for e in page.events] == [
            (e.seqNum, wire.args_text(e), each) for e in pushed[each]
        ]
    # The first pushes take every connection alone; all the others wait, and go in one transaction.
    assert len(_inserting_transactions(store_ids)) <= db.database_threads() + 1
    assert max(group_sizes) > 1


async def test_pushes_arriving_while_one_runs_wait_for_it_and_go_as_one_group(store_id, group_sizes, monkeypatch):
    """One statement or group at a time: the first push runs alone, the 19 arriving meanwhile go together
    once it is done (however slow this machine, with the stall threshold out of reach)."""
    monkeypatch.setattr(postgres, "STALLED_GROUP_SECONDS", 60)
    store_ids = await _known_stores(store_id, 20)
    await asyncio.gather(*(eventlog.commit(each, batch(2, 2, each)) for each in store_ids))
    assert group_sizes == [1, 19]
    assert len(_inserting_transactions(store_ids)) == 2


async def test_a_held_up_push_does_not_hold_up_pushes_to_other_stores(store_id):
    """A push waiting for its store's row (another transaction holds it) runs past STALLED_GROUP_SECONDS: a
    push to another store then takes another connection, and is acknowledged while the first still waits."""
    held, free = await _known_stores(store_id, 2)
    with connect_to_test_database() as other:
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM syncapp_store WHERE store_id = %s FOR UPDATE", [held])
        held_push = asyncio.ensure_future(eventlog.commit(held, batch(2, 2, held)))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(eventlog.commit(free, batch(2, 2, free)), timeout=10)
        assert not held_push.done()
        assert await _stored(free) == [(1, "c"), (2, free)]
        other.execute("ROLLBACK")
    await held_push
    assert await _stored(held) == [(1, "c"), (2, held)]


async def test_pushes_past_a_held_up_group_go_on_however_many_wait(store_id, monkeypatch):
    """More pushes wait than one group takes, behind a held-up group, and the group they would follow is held
    up too (it carries a push waiting for its store's row): the rest still take another connection and are
    acknowledged meanwhile."""
    monkeypatch.setattr(postgres, "GROUP_LIMIT", 5)
    held, *others = await _known_stores(store_id, 10)
    with connect_to_test_database() as other:
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM syncapp_store WHERE store_id = %s FOR UPDATE", [held])
        first = asyncio.ensure_future(eventlog.commit(held, batch(2, 2, held)))
        await asyncio.sleep(0.2)
        # Past the first's stall: the second starts at once, and everything after it waits behind it.
        stale = [asyncio.ensure_future(eventlog.commit(held, batch(2, 2, f"again-{n}"))) for n in range(2)]
        # The next group: the third push to the held store and four others; then a group of the last five.
        behind = [asyncio.ensure_future(eventlog.commit(each, batch(2, 2, each))) for each in others]
        done, _ = await asyncio.wait(behind[4:], timeout=10)
        assert len(done) == 5
        assert not first.done() and not any(push.done() for push in stale)
        other.execute("ROLLBACK")
    await asyncio.gather(first, *behind)
    for push in stale:
        with pytest.raises(storage.ParentMismatch):
            await push
    for each in others:
        assert await _stored(each) == [(1, "c"), (2, each)]


async def test_a_push_that_fails_in_a_group_fails_alone(store_id, group_sizes):
    """A push whose statement fails rolls its group back; every other push of the group is still stored."""
    store_ids = await _known_stores(store_id, 20)
    broken = store_ids[-1]
    with connect_to_test_database() as other:
        other.execute(f"DROP TABLE {connection.ops.quote_name(stores.known_location(broken).db_table)}")
    outcomes = await asyncio.gather(
        *(eventlog.commit(each, batch(2, 2, each)) for each in store_ids), return_exceptions=True
    )
    assert max(group_sizes) > 1
    assert isinstance(outcomes[-1], eventlog.StoreUnavailable)
    assert not any(isinstance(outcome, BaseException) for outcome in outcomes[:-1])
    for each in store_ids[:-1]:
        assert await _stored(each) == [(1, "c"), (2, each)]


async def test_stale_pushes_in_a_group_are_refused_and_the_others_stored(store_id, group_sizes):
    """A group's compare-and-set is per push: one on a stale parent is refused, as alone."""
    store_ids = await _known_stores(store_id, 20)
    stale = store_ids[-1]
    await eventlog.commit(stale, batch(2, 2, "first"))
    outcomes = await asyncio.gather(
        *(eventlog.commit(each, batch(2, 2, each)) for each in store_ids), return_exceptions=True
    )
    assert max(group_sizes) > 1
    assert isinstance(outcomes[-1], storage.ParentMismatch)
    assert not any(isinstance(outcome, BaseException) for outcome in outcomes[:-1])
    assert await _stored(stale) == [(1, "c"), (2, "first")]


async def test_a_lock_timeout_in_a_group_fails_that_push_alone(store_id, group_sizes, monkeypatch):
    """A push whose store row another transaction holds times out on its lock (``lock_timeout``): its group is
    rolled back on a connection that still works, and every other push of the group is stored, none of them
    counted as meeting an unavailable database."""
    from prometheus_client import REGISTRY

    def database_outages():
        return REGISTRY.get_sample_value("livesync_unavailable_total", {"service": "database"}) or 0

    store_ids = await _known_stores(store_id, 20)
    held = store_ids[-1]
    options = {**connection.settings_dict["OPTIONS"], "options": "-c lock_timeout=300"}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    outages_before = database_outages()
    with connect_to_test_database() as other:
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM syncapp_store WHERE store_id = %s FOR UPDATE", [held])
        outcomes = await asyncio.gather(
            *(eventlog.commit(each, batch(2, 2, each)) for each in store_ids), return_exceptions=True
        )
        other.execute("ROLLBACK")
    assert max(group_sizes) > 1
    assert isinstance(outcomes[-1], eventlog.StoreUnavailable)
    assert not any(isinstance(outcome, BaseException) for outcome in outcomes[:-1]), outcomes
    # The held push's own two attempts (its first, and the one after reading back) are the only outages.
    assert database_outages() - outages_before <= 2
    for each in store_ids[:-1]:
        assert await _stored(each) == [(1, "c"), (2, each)]


@pytest.fixture
def statements_django_sees():
    """The SQL of every statement run through Django's cursors, in any thread: each connection Django opens gets
    an ``execute_wrapper`` that records it, as a host instruments all of its connections."""
    seen = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    def instrument(sender, connection, **kwargs):
        if record not in connection.execute_wrappers:
            connection.execute_wrappers.append(record)

    connection_created.connect(instrument)
    yield seen
    connection_created.disconnect(instrument)


@pytest.fixture
def database_options(monkeypatch):
    """Sets OPTIONS of the default database for the test; Django's connection pool is closed afterwards."""

    def set_options(options):
        for name, value in options.items():
            monkeypatch.setitem(connections.settings["default"]["OPTIONS"], name, value)
        postgres.applies_to.cache_clear()

    yield set_options
    connections["default"].close_pool()
    postgres.applies_to.cache_clear()


@pytest.mark.parametrize(
    "options",
    [
        {"pool": True},
        {"pool": {"min_size": 1, "max_size": 2}},
        {"isolation_level": IsolationLevel.SERIALIZABLE},
        {"cursor_factory": Cursor},
    ],
    ids=["pool", "pool-options", "isolation_level", "cursor_factory"],
)
async def test_with_options_only_djangos_connections_honour_pushes_run_on_them(
    store_id, statements_django_sees, database_options, options
):
    """Django's connection pool, a cursor class of the host's and a transaction isolation level cannot be had on
    the event loop's connections: pushes to the database then run on Django's, and its instrumentation sees
    every statement."""
    database_options(options)
    await _known_store(store_id, 1)
    statements_django_sees.clear()
    await eventlog.commit(store_id, batch(2, 2, "seen"))
    assert any(sql.startswith("WITH moved AS") for sql in statements_django_sees), statements_django_sees
    assert postgres._pools.get(asyncio.get_running_loop(), {}) == {}
    assert await _stored(store_id) == [(1, "c"), (2, "seen")]
