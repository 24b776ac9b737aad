"""A lone push to a known store on SQLite, committed on the event loop (``syncapp.sqlite``)."""

import asyncio
import sqlite3
import threading
import time

import pytest
from django.db import connection, connections

from syncapp import storage
from syncapp.core import eventlog
from syncapp.storage import backends, db, sqlite, stores
from tests.support.chains import batch, no_args, push_what_the_fast_path_cannot_take

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


@pytest.fixture(autouse=True)
def quick_commits_so_far(monkeypatch):
    """No slow commit of an earlier test sends this test's pushes to the thread."""
    monkeypatch.setattr(sqlite, "_thread_until", {})
    monkeypatch.setattr(sqlite, "_commit_seconds", {})


@pytest.fixture
def loop_attempts(monkeypatch):
    """What each transaction tried on the event loop came to: Appended, None (declined) or the exception."""
    outcomes = []
    append_alone_sqlite = sqlite.append_alone_sqlite

    def recorded(driver, location, pending, created_at, wait_for_lock=True):
        try:
            outcome = append_alone_sqlite(driver, location, pending, created_at, wait_for_lock)
        except Exception as error:
            outcomes.append(type(error).__name__)
            raise
        if not wait_for_lock:
            outcomes.append(outcome if outcome is None else "appended")
        return outcome

    monkeypatch.setattr(sqlite, "append_alone_sqlite", recorded)
    return outcomes


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
    assert stores.known_location(store_id) is not None


def _rows_seen_by_another_connection(store_id):
    table = connection.ops.quote_name(stores.known_location(store_id).table_name)
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


async def test_a_lone_push_to_a_known_store_is_committed_on_the_event_loop(store_id, thread_calls, loop_attempts):
    await _known_store(store_id, 2)
    thread_calls.clear()
    appended = await eventlog.commit(store_id, batch(3, 4, "loop"))
    assert appended.already_stored == 0
    assert thread_calls == []
    assert loop_attempts == ["appended"]
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
    await push_what_the_fast_path_cannot_take(store_id)
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "c"), (3, "c"), (4, "new")]


async def test_a_push_meeting_another_writer_waits_on_the_thread_not_on_the_event_loop(
    store_id, thread_calls, loop_attempts
):
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
    assert loop_attempts == [None]
    assert thread_calls == [[store_id]]
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "waited")]
    assert await _busy_timeout_of_the_thread() == busy_timeout


async def test_a_slow_commit_sends_the_next_pushes_to_the_thread(store_id, thread_calls, monkeypatch):
    monkeypatch.setattr(sqlite, "SLOW_COMMIT_SECONDS", 0.0)
    monkeypatch.setattr(sqlite, "_thread_until", {})
    monkeypatch.setattr(sqlite, "_commit_seconds", {})
    await _known_store(store_id, 1)
    thread_calls.clear()
    await eventlog.commit(store_id, batch(2, 2, "on the loop"))
    assert thread_calls == []
    await eventlog.commit(store_id, batch(3, 3, "on the thread"))
    assert thread_calls == [[store_id]]
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "on the loop"), (3, "on the thread")]


async def test_an_occasional_stall_does_not_count_and_stalls_in_a_row_or_a_slow_disk_do():
    """A WAL checkpoint now and then (16 ms here) keeps pushes on the event loop; three 50 ms stalls in a row do
    not, nor does a disk that takes 2 ms for every commit."""
    loop = asyncio.get_running_loop()
    quiet = [0.0001] * 30
    for seconds in quiet + [0.016] + quiet + [0.05] + quiet + [0.05, 0.05]:
        sqlite._note_commit_time(loop, "default", seconds)
    assert "default" not in sqlite._thread_until
    sqlite._note_commit_time(loop, "default", 0.05)
    assert sqlite._thread_until["default"] > loop.time()

    sqlite._thread_until.clear()
    for _ in range(5):
        sqlite._note_commit_time(loop, "default", 0.002)
    assert "default" not in sqlite._thread_until
    for _ in range(5):
        sqlite._note_commit_time(loop, "default", 0.002)
    assert sqlite._thread_until["default"] > loop.time()


async def test_a_push_whose_rows_cannot_be_inserted_moves_no_head_and_leaves_the_connection_usable(
    store_id, thread_calls, loop_attempts
):
    await _known_store(store_id, 1)
    table = connection.ops.quote_name(stores.known_location(store_id).table_name)
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        other.execute(
            f'INSERT INTO {table} ("seqNum", "parentSeqNum", "name", "createdAt", "clientId", "sessionId") '
            "VALUES (2, 1, 'v1.ByHand', '2026-01-01T00:00:00.000Z', 'hand', 'hand')"
        )
    finally:
        other.close()
    thread_calls.clear()
    with pytest.raises(eventlog.StoreUnavailable):
        await eventlog.commit(store_id, batch(2, 2, "pusher"))
    assert loop_attempts == ["IntegrityError"]
    assert thread_calls == []
    assert await db.run(storage.head, store_id) == 1
    await _known_store(f"{store_id}.next", 1)
    await eventlog.commit(f"{store_id}.next", batch(2, 2, "next"))
    assert _rows_seen_by_another_connection(f"{store_id}.next") == [(1, "c"), (2, "next")]


async def test_a_push_while_the_thread_is_busy_waits_for_it(store_id, thread_calls, loop_attempts):
    """A call running on the database thread (a long read, say): the push is not committed past it."""
    await _known_store(store_id, 1)
    thread_calls.clear()
    release = threading.Event()
    running = asyncio.ensure_future(db.run(release.wait, 10))
    await asyncio.sleep(0.05)
    push = asyncio.ensure_future(eventlog.commit(store_id, batch(2, 2, "after")))
    await asyncio.sleep(0.05)
    assert not push.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(running, push), 10)
    assert loop_attempts == []
    assert thread_calls == [[store_id]]


async def test_a_push_while_another_thread_writes_waits_for_it(store_id, thread_calls, loop_attempts):
    """Another thread of the process holds the writer lock (a management command, the admin): the push goes to
    the database thread, which waits for the lock."""
    await _known_store(store_id, 1)
    thread_calls.clear()
    taken, release = threading.Event(), threading.Event()

    def write_elsewhere():
        with backends.sqlite_writer_lock("default"):
            taken.set()
            release.wait(10)

    elsewhere = threading.Thread(target=write_elsewhere)
    elsewhere.start()
    try:
        taken.wait(5)
        push = asyncio.ensure_future(eventlog.commit(store_id, batch(2, 2, "after")))
        await asyncio.sleep(0.1)
        assert not push.done()
    finally:
        release.set()
        elsewhere.join(5)
    await asyncio.wait_for(push, 10)
    assert loop_attempts == []
    assert thread_calls == [[store_id]]
    assert _rows_seen_by_another_connection(store_id) == [(1, "c"), (2, "after")]


def _copy_in_rollback_journal_mode(path):
    """The test database copied to ``path``, in rollback-journal mode, where a COMMIT waits for readers."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM INTO %s", [str(path)])
    copy = sqlite3.connect(path, isolation_level=None)
    copy.execute("PRAGMA journal_mode = DELETE")
    return copy


def _head_in(database, store_id):
    return database.execute("SELECT head FROM syncapp_store WHERE store_id = ?", [store_id]).fetchone()[0]


def test_a_commit_that_fails_is_rolled_back_and_a_lock_in_the_way_declines_at_once(store_id, tmp_path):
    """A reader holds the copy's shared lock, so COMMIT cannot finish. Without waiting for locks the push is
    rolled back and declined at once; waiting, it fails when the busy timeout ends, rolled back too. Either
    way the connection is left outside any transaction, with its own busy timeout, and usable."""
    storage.append(store_id, batch(1, 1), no_args)
    location = stores.known_location(store_id)
    driver = _copy_in_rollback_journal_mode(tmp_path / "copy.sqlite3")
    reader = sqlite3.connect(tmp_path / "copy.sqlite3", isolation_level=None)
    try:
        driver.execute("PRAGMA busy_timeout = 50")
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM syncapp_store").fetchone()
        pending = storage.PendingAppend(store_id, batch(2, 2), no_args)

        started = time.monotonic()
        assert sqlite.append_alone_sqlite(driver, location, pending, storage.now_iso(), wait_for_lock=False) is None
        assert time.monotonic() - started < 0.05
        assert not driver.in_transaction

        with pytest.raises(sqlite3.OperationalError):
            sqlite.append_alone_sqlite(driver, location, pending, storage.now_iso())
        assert not driver.in_transaction
        assert driver.execute("PRAGMA busy_timeout").fetchone()[0] == 50
        assert _head_in(driver, store_id) == 1

        reader.execute("ROLLBACK")
        appended = sqlite.append_alone_sqlite(driver, location, pending, storage.now_iso(), wait_for_lock=False)
        assert appended is not None
        assert _head_in(reader, store_id) == 2
    finally:
        reader.close()
        driver.close()
