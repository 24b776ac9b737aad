"""Per-store eventlog tables: names, creation, the chain check, paged reads."""

import threading

import pytest
from django.db import DatabaseError, OperationalError, connection
from django.test.utils import CaptureQueriesContext

from syncapp import storage
from syncapp.models import Store
from syncapp.protocol import wire
from syncapp.storage import reads, schema, sqlite, statements, stores, tables
from tests.support.chains import batch, no_args

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


def test_table_name_follows_the_reference(store_id):
    assert tables.table_name_for("my-store.1") == "eventlog_7_my_store_1"
    storage.append(f"{store_id}.1", batch(1, 1), no_args)
    assert Store.objects.get(store_id=f"{store_id}.1").table_name == "eventlog_7_" + store_id.replace("-", "_") + "_1"


def test_store_ids_that_sanitize_alike_get_two_tables(store_id):
    dashed, underscored = f"{store_id}-x", f"{store_id}_x"
    storage.append(dashed, batch(1, 2, "dash"), no_args)
    storage.append(underscored, batch(1, 1, "underscore"), no_args)
    table_names = dict(Store.objects.values_list("store_id", "table_name"))
    assert table_names[dashed] == tables.TABLE_PREFIX + storage.sanitize(dashed)
    assert table_names[underscored].startswith(table_names[dashed] + "_")
    assert [e.client_id for e in storage.read_page(dashed, 0, 10).events] == ["dash", "dash"]
    assert [e.client_id for e in storage.read_page(underscored, 0, 10).events] == ["underscore"]


def test_a_lost_registry_row_is_rebuilt_from_the_table(store_id):
    storage.append(store_id, batch(1, 3), no_args)
    Store.objects.filter(store_id=store_id).delete()
    storage.append(store_id, batch(4, 4), no_args)
    assert storage.head(store_id) == 4


def test_a_200_character_store_id_works(store_id):
    store_id = store_id + "s" * (200 - len(store_id))
    storage.append(store_id, batch(1, 3), no_args)
    table = Store.objects.get(store_id=store_id).table_name
    limit = connection.ops.max_name_length()
    if limit:
        assert len(table) <= limit
    assert schema._find_table("default", table) is not None
    assert [e.seq_num for e in storage.read_page(store_id, 0, 10).events] == [1, 2, 3]


def test_table_has_exactly_the_reference_columns(store_id):
    storage.append(store_id, batch(1, 1), no_args)
    table = connection.ops.quote_name(stores.known_location(store_id).db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} LIMIT 0")
        columns = [column[0] for column in cursor.description]
    assert sorted(columns) == sorted(["seqNum", "parentSeqNum", "name", "args", "createdAt", "clientId", "sessionId"])


def test_rejected_batches_write_nothing(store_id):
    storage.append(store_id, batch(1, 2), no_args)
    with pytest.raises(storage.ParentMismatch) as mismatch:
        storage.append(store_id, batch(4, 4), no_args)
    assert (mismatch.value.received, mismatch.value.head) == (3, 2)
    broken = batch(3, 3) + batch(5, 5)
    with pytest.raises(storage.BrokenChain):
        storage.append(store_id, broken, no_args)
    assert storage.head(store_id) == 2
    assert len(storage.read_page(store_id, 0, 100).events) == 2


def test_page_remaining_counts_events_after_the_page(store_id):
    storage.append(store_id, batch(1, 25), no_args)
    page = storage.read_page(store_id, 5, 10)
    assert [e.seq_num for e in page.events] == list(range(6, 16))
    assert page.remaining == 10
    assert storage.read_page(store_id, 25, 10).remaining == 0
    assert storage.read_page("never-seen", 0, 10) == reads.Page(events=[], head=0)


def test_concurrent_appends_on_one_parent_exactly_one_wins(store_id):
    storage.append(store_id, batch(1, 1), no_args)
    barrier = threading.Barrier(4)
    outcomes = []

    def contender(name):
        barrier.wait()
        try:
            storage.append(store_id, batch(2, 3, name), no_args)
            outcomes.append(("ok", name))
        except storage.ParentMismatch:
            outcomes.append(("rejected", name))
        finally:
            connection.close()

    threads = [threading.Thread(target=contender, args=(f"c{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(kind for kind, _ in outcomes) == ["ok", "rejected", "rejected", "rejected"]
    winner = next(name for kind, name in outcomes if kind == "ok")
    events = storage.read_page(store_id, 0, 10).events
    assert [(e.seq_num, e.client_id) for e in events] == [(1, "c"), (2, winner), (3, winner)]


def test_concurrent_first_use_of_a_store_creates_one_table(store_id):
    barrier = threading.Barrier(4)
    errors = []

    def opener():
        barrier.wait()
        try:
            storage.open_store(store_id)
        except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Store.objects.filter(store_id=store_id).count() == 1


def test_reset_and_delete(store_id):
    storage.append(store_id, batch(1, 3), no_args)
    storage.reset(store_id)
    assert storage.head(store_id) == 0
    assert storage.read_page(store_id, 0, 10).events == []
    storage.append(store_id, batch(1, 1), no_args)
    table = Store.objects.get(store_id=store_id).table_name
    storage.delete(store_id)
    assert storage.get_store(store_id) is None
    assert schema._find_table("default", table) is None


def test_created_at_is_javascript_iso_format():
    assert storage.now_iso()[-1] == "Z" and len(storage.now_iso()) == len("2026-11-26T16:35:38.179Z")


def test_pushes_committed_together_are_each_checked_on_their_own(store_id):
    """One transaction for several pushes: a rejected one changes nothing, the others are all stored."""
    storage.append(f"{store_id}.b", batch(1, 2), no_args)
    pendings = [
        storage.PendingAppend(f"{store_id}.a", batch(1, 2), no_args),
        storage.PendingAppend(f"{store_id}.b", batch(2, 2, "late"), no_args),
        storage.PendingAppend(f"{store_id}.c", batch(1, 1), no_args),
        storage.PendingAppend(f"{store_id}.a", batch(3, 3), no_args),
        storage.PendingAppend(f"{store_id}.c", batch(1, 1, "other"), no_args),
    ]
    outcomes = storage.append_many(pendings)
    assert [type(outcome) for outcome in outcomes] == [
        storage.Appended,
        storage.ParentMismatch,
        storage.Appended,
        storage.Appended,
        storage.ParentMismatch,
    ]
    assert (outcomes[1].received, outcomes[1].head) == (1, 2)
    assert [e.seq_num for e in storage.read_page(f"{store_id}.a", 0, 10).events] == [1, 2, 3]
    assert [e.seq_num for e in storage.read_page(f"{store_id}.b", 0, 10).events] == [1, 2]
    assert [(e.seq_num, e.client_id) for e in storage.read_page(f"{store_id}.c", 0, 10).events] == [(1, "c")]
    assert [storage.head(f"{store_id}.{name}") for name in "abc"] == [3, 2, 1]


def test_pushes_to_several_new_stores_create_each_store_and_table(store_id):
    """New stores pushed to together are created together; a table left by a lost row, and two storeIds
    that sanitize alike, are still sorted out one by one."""
    orphan = f"{store_id}.orphan"
    storage.append(orphan, batch(1, 3), no_args)
    Store.objects.filter(store_id=orphan).delete()
    stores._locations.pop(orphan, None)
    names = [f"{store_id}.a", f"{store_id}.b", f"{store_id}-x", f"{store_id}_x"]
    pendings = [storage.PendingAppend(name, batch(1, 2, name), no_args) for name in names]
    pendings.append(storage.PendingAppend(orphan, batch(4, 4), no_args))
    outcomes = storage.append_many(pendings)
    assert all(type(outcome) is storage.Appended for outcome in outcomes), outcomes
    table_names = dict(Store.objects.filter(store_id__in=[*names, orphan]).values_list("store_id", "table_name"))
    assert len(set(table_names.values())) == 5
    assert all(schema._find_table("default", table) is not None for table in table_names.values())
    for name in names:
        assert [(e.seq_num, e.client_id) for e in storage.read_page(name, 0, 10).events] == [(1, name), (2, name)]
    assert storage.head(orphan) == 4


def test_a_push_the_database_refuses_fails_alone_in_its_group(store_id):
    """PostgreSQL text cannot hold NUL: that push is rejected as what it is, and the pushes committed with
    it are stored all the same. (SQLite stores it; the codecs refuse such events before either sees them.)"""
    for name in "ab":
        storage.append(f"{store_id}.{name}", batch(1, 1), no_args)
    pendings = [
        storage.PendingAppend(f"{store_id}.a", batch(2, 3), no_args),
        storage.PendingAppend(f"{store_id}.nul", batch(1, 1, "a\x00b"), no_args),
        storage.PendingAppend(f"{store_id}.b", batch(2, 2), no_args),
    ]
    outcomes = storage.append_many(pendings)
    refused = connection.vendor == "postgresql"
    assert type(outcomes[1]) is (statements.UnstorableBatch if refused else storage.Appended)
    if refused:
        assert str(outcomes[1]).startswith("Push rejected: the database cannot store it")
        assert storage.head(f"{store_id}.nul") == 0
    assert [type(outcomes[0]), type(outcomes[2])] == [storage.Appended, storage.Appended]
    assert [storage.head(f"{store_id}.{name}") for name in "ab"] == [3, 2]


def test_a_push_whose_write_fails_fails_alone_in_its_group(store_id):
    """A store whose table is gone (dropped by hand) fails its push; the pushes committed with it are stored."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite reports a missing table as OperationalError, which counts as an outage")
    for name in "abc":
        storage.append(f"{store_id}.{name}", batch(1, 1), no_args)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(stores.known_location(f'{store_id}.b').db_table)}")
    pendings = [storage.PendingAppend(f"{store_id}.{name}", batch(2, 2), no_args) for name in "abc"]
    outcomes = storage.append_many(pendings)
    assert isinstance(outcomes[1], DatabaseError) and not isinstance(outcomes[1], OperationalError)
    assert [type(outcomes[0]), type(outcomes[2])] == [storage.Appended, storage.Appended]
    assert [storage.head(f"{store_id}.{name}") for name in "ac"] == [2, 2]


@pytest.mark.parametrize("store_ids", [("Abc", "abc", "ABC"), ("sq-x", "sq_x")])
def test_every_store_id_gets_a_table_of_its_own_whatever_was_taken_before(store_id, store_ids):
    names = [f"{store_id}-{name}" for name in store_ids]
    squatter = tables.table_name_for(names[-1], hashed=True).removeprefix(tables.TABLE_PREFIX)
    for name in [squatter, *names]:
        storage.append(name, batch(1, 1, name), no_args)
    for name in [squatter, *names]:
        assert [e.client_id for e in storage.read_page(name, 0, 10).events] == [name]
    table_names = Store.objects.filter(store_id__in=[squatter, *names]).values_list("table_name", flat=True)
    # SQLite's table names ignore case; PostgreSQL's quoted ones do not.
    same_table = str.lower if connection.vendor == "sqlite" else str
    assert len({same_table(table) for table in table_names}) == len(names) + 1


def test_a_read_of_large_events_holds_about_its_byte_budget_and_the_rest_follows(store_id):
    big = wire.Raw(('"' + "x" * 1_000_000 + '"').encode())
    large = [
        wire.Event(name="v1.E", args=big, seqNum=n, parentSeqNum=n - 1, clientId="c", sessionId="s")
        for n in range(1, 11)
    ]
    storage.append(store_id, large, lambda event: bytes(event.args).decode())
    first = storage.read_page(store_id, 0, 1000)
    assert [e.seq_num for e in first.events] == [1, 2, 3, 4]
    assert first.remaining == 6
    assert [e.seq_num for e in storage.read_page(store_id, 4, 1000).events] == [5, 6, 7, 8]
    assert [e.seq_num for e in storage.read_page(store_id, 0, 1000, max_bytes=1).events] == [1]


def test_a_lone_push_that_extends_the_head_commits_in_one_statement(store_id, monkeypatch):
    """One round trip per push where the database allows it (PostgreSQL), one transaction on the driver's own
    connection on SQLite: the head and the rows move together and are committed, and a stale or retried push
    still takes the checked path."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    storage.append(store_id, batch(1, 1), no_args)
    sqlite_transactions = []
    append_alone_sqlite = sqlite.append_alone_sqlite

    def recorded(*args, **kwargs):
        sqlite_transactions.append(append_alone_sqlite(*args, **kwargs))
        return sqlite_transactions[-1]

    monkeypatch.setattr(sqlite, "append_alone_sqlite", recorded)
    with CaptureQueriesContext(connection) as queries:
        appended = storage.append(store_id, batch(2, 4), no_args)
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    if connection.vendor == "postgresql":
        assert len(writes) == 1 and writes[0].startswith("WITH moved AS"), writes
    else:
        # Past Django's cursor: one transaction on the driver's connection, which committed the push.
        assert writes == [] and sqlite_transactions == [appended]
    assert appended.already_stored == 0
    # Committed: another connection sees the head and the rows.
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*) FROM {connection.ops.quote_name(stores.known_location(store_id).db_table)}"
            )
            assert cursor.fetchone()[0] == 4
    finally:
        other.close()
    assert storage.head(store_id) == 4
    with pytest.raises(storage.ParentMismatch):
        storage.append(store_id, batch(2, 2, "stale"), no_args)
    assert storage.append(store_id, batch(4, 5), no_args).already_stored == 1
    assert [e.seq_num for e in storage.read_page(store_id, 0, 10).events] == [1, 2, 3, 4, 5]


def test_a_lone_push_whose_rows_cannot_be_inserted_moves_no_head(store_id):
    """The compare-and-set and the insert commit together or not at all: a row already in the table (put
    there by hand) fails the insert, and the head stays where it was, on the connection that pushed too."""
    storage.append(store_id, batch(1, 1), no_args)
    table = connection.ops.quote_name(stores.known_location(store_id).db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO {table} ("seqNum", "parentSeqNum", "name", "createdAt", "clientId", "sessionId") '
            "VALUES (2, 1, 'v1.ByHand', '2026-01-01T00:00:00.000Z', 'hand', 'hand')"
        )
    with pytest.raises(DatabaseError):
        storage.append(store_id, batch(2, 2, "pusher"), no_args)
    assert storage.head(store_id) == 1
    assert Store.objects.get(store_id=store_id).head == 1
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "clientId" FROM {table} ORDER BY "seqNum"')
        assert [client for (client,) in cursor.fetchall()] == ["c", "hand"]


def test_a_long_push_is_stored_whole(store_id):
    """A batch longer than a one-statement push carries takes the general path, and is stored whole."""
    storage.append(store_id, batch(1, 12_000), no_args)
    assert storage.head(store_id) == 12_000
    assert len(storage.read_page(store_id, 11_990, 100).events) == 10


# What a query that lists or walks every table (or the whole schema) looks like on each database.
TABLE_LISTING = ("sqlite_master", "pg_class", "information_schema", "foreign_key_check")


def _queries_of(action):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        action()
    return [q["sql"] for q in queries.captured_queries]


def test_a_new_store_costs_the_same_few_queries_however_many_stores_exist(store_id):
    """Creating a store looks nothing up by listing: its cost does not grow with the number of stores."""
    first = _queries_of(lambda: storage.append(f"{store_id}.first", batch(1, 1), no_args))
    for number in range(50):
        storage.append(f"{store_id}.{number}", batch(1, 1), no_args)
    later = _queries_of(lambda: storage.append(f"{store_id}.later", batch(1, 1), no_args))
    opened = _queries_of(lambda: storage.open_store(f"{store_id}.opened"))
    assert len(later) == len(first)
    for sql in [*first, *later, *opened]:
        if "pg_class" in sql:
            # Spare tables (syncapp.storage.spares) are found by a name range on the catalog's index, never a scan.
            assert "Seq Scan on pg_class" not in _plan(sql), sql
        else:
            assert not any(listing in sql for listing in TABLE_LISTING), sql


def _plan(sql):
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(line for (line,) in cursor.fetchall())


def test_a_page_of_a_long_backlog_reads_its_own_rows_only(store_id):
    """A cold pull's reads cost the same from the first page to the last: PostgreSQL, planning a table it has
    not analyzed yet, scanned every event left for each page (a backlog's reads grew with its square)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite walks the primary key in order for any range")
    for first in range(1, 5001, 1000):
        storage.append(store_id, batch(first, first + 999), no_args)
    (read,) = [sql for sql in _queries_of(lambda: storage.read_page(store_id, 0, 100)) if "seqNum" in sql]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + read)
        plan = cursor.fetchone()[0][0]["Plan"]

    def rows_read(node):
        yield node["Actual Rows"] + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        for child in node.get("Plans", []):
            yield from rows_read(child)

    assert max(rows_read(plan)) == 100


def test_a_table_with_a_gap_is_read_past_it(store_id):
    """A table adopted as it was found may skip seqNums: a read past the gap still reaches the head."""
    storage.append(store_id, batch(1, 3), no_args)
    table = connection.ops.quote_name(stores.known_location(store_id).db_table)
    columns = ", ".join(connection.ops.quote_name(column) for column in statements.EVENT_COLUMNS)
    with connection.cursor() as cursor:
        for seq_num in (500, 501):
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, 'v1.E', NULL, '2026-01-01T00:00:00.000Z', 'c', 's')",
                [seq_num, seq_num - 1],
            )
    Store.objects.filter(store_id=store_id).update(head=501)
    page = storage.read_page(store_id, 3, 100)
    assert [event.seq_num for event in page.events] == [500, 501]
    assert page.remaining == 0


def test_a_process_keeps_locations_for_the_stores_used_last_only(store_id, settings):
    settings.LIVESYNC = {**getattr(settings, "LIVESYNC", {}), "STORE_CACHE_SIZE": 5}
    names = [f"{store_id}.{number}" for number in range(12)]
    for name in names:
        storage.append(name, batch(1, 1, name), no_args)
    assert len(stores._locations) == 5
    # A store whose entry was dropped is looked up again and works as before.
    storage.append(names[0], batch(2, 2, names[0]), no_args)
    assert [e.seq_num for e in storage.read_page(names[0], 0, 10).events] == [1, 2]
    assert len(stores._locations) == 5


def test_model_classes_of_eventlog_tables_do_not_pile_up(store_id):
    """Each store's run-time model class is let go once MODEL_CACHE_SIZE others were used after it."""
    for number in range(tables.MODEL_CACHE_SIZE + 20):
        storage.open_store(f"{store_id}.{number}")
    registered = tables._eventlog_apps.all_models["syncapp_eventlog"]
    assert len(registered) <= tables.MODEL_CACHE_SIZE
    storage.reset(f"{store_id}.0")
    storage.delete(f"{store_id}.1")
    assert storage.get_store(f"{store_id}.1") is None


@pytest.mark.skipif(connection.vendor != "sqlite", reason="a rowid is SQLite's")
def test_on_sqlite_seqnum_is_the_tables_rowid_as_in_the_reference(store_id):
    """``seqNum integer primary key``, as the reference's D1 table declares it: the table is its own index."""
    storage.append(store_id, batch(1, 2), no_args)
    table = Store.objects.get(store_id=store_id).table_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE tbl_name = %s", [table])
        assert cursor.fetchone()[0] == 1  # no separate index for the primary key
        cursor.execute(f'SELECT rowid, "seqNum" FROM "{table}" ORDER BY 1')
        assert cursor.fetchall() == [(1, 1), (2, 2)]


def test_a_group_of_new_stores_is_registered_in_one_statement(store_id):
    """A burst of new stores costs one round trip for their registry rows, not one per store."""
    names = [f"{store_id}.{number}" for number in range(20)]
    with CaptureQueriesContext(connection) as queries:
        outcomes = storage.append_many([storage.PendingAppend(name, batch(1, 2), no_args) for name in names])
    assert all(isinstance(outcome, storage.Appended) for outcome in outcomes)
    registry_inserts = [q["sql"] for q in queries if q["sql"].startswith(f'INSERT INTO "{Store._meta.db_table}"')]
    assert len(registry_inserts) == 1
    assert sorted(Store.objects.filter(store_id__in=names).values_list("store_id", flat=True)) == sorted(names)
    assert all(storage.read_page(name, 0, 10).head == 2 for name in names)
