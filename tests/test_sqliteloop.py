"""A lone push to a known store on SQLite, committed on the event loop (``syncapp.sqliteloop``)."""

import asyncio
import sqlite3
import time

import pytest
from django.db import connection, connections

from syncapp import db, eventlog, sqliteloop, storage, wire
from tests.support.chains import batch, no_args

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("the event-loop commit is SQLite's")


@pytest.fixture(autouse=True)
async def kept_connection():
    """CONN_MAX_AGE None for the test, as in production (the suite's 0 closes the database thread's connection
    after each call, and a closed connection is never lent); afterwards the thread's connection is closed."""
    settings = connections.settings["default"]
    saved = settings["CONN_MAX_AGE"]
    settings["CONN_MAX_AGE"] = None
    yield
    settings["CONN_MAX_AGE"] = saved
    await db.run(connections.close_all)


@pytest.fixture
def thread_calls(monkeypatch):
    """The pushes that went to the database thread, one list per commit there."""
    groups = []
    append_many = storage.append_many

    def recorded(pendings, *args, **kwargs):
        groups.append([pending.store_id for pending in pendings])
        return append_many(pendings, *args, **kwargs)

    monkeypatch.setattr(storage, "append_many", recorded)
    return groups


async def _known_store(store_id, head):
    """A store created on the database thread, as a store's first push is, and known to the process."""
    await db.run(storage.append, store_id, batch(1, head), no_args)
    assert storage.known_location(store_id) is not None


def _rows_seen_by_another_connection(store_id):
    table = connection.ops.quote_name(storage.known_location(store_id).table_name)
    other = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        return other.execute(f'SELECT "seqNum", "clientId" FROM {table} ORDER BY "seqNum"').fetchall()
    finally:
        other.close()


async def _busy_timeout_of_the_thread():
    def busy_timeout():
        with connections["default"].cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            return cursor.fetchone()[0]

    return await db.run(busy_timeout)


async def test_a_lone_push_to_a_known_store_is_committed_on_the_event_loop(store_id, thread_calls):
    await _known_store(store_id, 2)
    thread_calls.clear()
    appended = await eventlog.commit(store_id, batch(3, 4, "loop"))
    assert appended.already_stored == 0
    assert thread_calls == []
    # Committed before the push returned: another connection sees the rows.
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "c"), (3, "loop"), (4, "loop")]
    assert await db.run(storage.head, store_id) == 4


async def test_pushes_of_one_turn_go_to_the_database_thread_and_are_committed_together(store_id, thread_calls):
    stores = [f"{store_id}.{number}" for number in range(5)]
    for name in stores:
        await _known_store(name, 1)
    thread_calls.clear()
    await asyncio.gather(*(eventlog.commit(name, batch(2, 2, "together")) for name in stores))
    # The first commits at once, the others wait for it and go as one group.
    assert [len(group) for group in thread_calls] == [1, 4]
    for name in stores:
        assert _rows_seen_by_another_connection(name) == [(1, "c"), (2, "together")]


async def test_pushes_the_transaction_cannot_take_are_decided_as_before(store_id):
    """A stale parent, a retry of stored events and a broken chain move nothing on the event loop."""
    await _known_store(store_id, 3)
    with pytest.raises(storage.ParentMismatch):
        await eventlog.commit(store_id, batch(2, 2, "stale"))
    retried = await eventlog.commit(store_id, [*batch(3, 3), *batch(4, 4, "new")])
    assert retried.already_stored == 1
    broken = batch(5, 6)
    broken[1] = wire.Event(name="v1.E", seqNum=9, parentSeqNum=5, clientId="c", sessionId="s")
    with pytest.raises(storage.BrokenChain):
        await eventlog.commit(store_id, broken)
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "c"), (3, "c"), (4, "new")]


async def test_a_push_meeting_another_writer_waits_on_the_thread_not_on_the_event_loop(store_id, thread_calls):
    """Another connection holds SQLite's write lock: the event loop goes on, the push waits for the lock on the
    database thread and is committed once it is free, and the thread's busy timeout is as it was."""
    await _known_store(store_id, 1)
    busy_timeout = await _busy_timeout_of_the_thread()
    thread_calls.clear()
    writer = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        push = asyncio.ensure_future(eventlog.commit(store_id, batch(2, 2, "waited")))
        started = time.monotonic()
        await asyncio.sleep(0.2)
        assert time.monotonic() - started < 1.0
        assert not push.done()
        writer.execute("ROLLBACK")
        await asyncio.wait_for(push, 10)
    finally:
        writer.close()
    assert thread_calls == [[store_id]]
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "waited")]
    assert await _busy_timeout_of_the_thread() == busy_timeout


async def test_a_slow_commit_sends_the_next_pushes_to_the_thread(store_id, thread_calls, monkeypatch):
    monkeypatch.setattr(sqliteloop, "SLOW_COMMIT_SECONDS", 0.0)
    monkeypatch.setattr(sqliteloop, "_thread_until", {})
    await _known_store(store_id, 1)
    thread_calls.clear()
    await eventlog.commit(store_id, batch(2, 2, "on the loop"))
    assert thread_calls == []
    await eventlog.commit(store_id, batch(3, 3, "on the thread"))
    assert thread_calls == [[store_id]]
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "on the loop"), (3, "on the thread")]


async def test_a_push_whose_rows_cannot_be_inserted_moves_no_head_and_leaves_the_connection_usable(store_id):
    await _known_store(store_id, 1)
    table = connection.ops.quote_name(storage.known_location(store_id).table_name)
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        other.execute(
            f'INSERT INTO {table} ("seqNum", "parentSeqNum", "name", "createdAt", "clientId", "sessionId") '
            "VALUES (2, 1, 'v1.ByHand', '2026-01-01T00:00:00.000Z', 'hand', 'hand')"
        )
    finally:
        other.close()
    with pytest.raises(eventlog.StoreUnavailable):
        await eventlog.commit(store_id, batch(2, 2, "pusher"))
    assert await db.run(storage.head, store_id) == 1
    await _known_store(f"{store_id}.next", 1)
    await eventlog.commit(f"{store_id}.next", batch(2, 2, "next"))
    assert _rows_seen_by_another_connection(f"{store_id}.next") == [(1, "c"), (2, "next")]
