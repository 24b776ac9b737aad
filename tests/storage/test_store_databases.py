"""Stores spread over two databases (``LIVESYNC["STORE_DATABASES"]``): placement, pushes, pulls, admin, commands.

Runs on both backends (``-m protocol``): two SQLite files, or two PostgreSQL
databases. Real server processes and LiveStore clients on two PostgreSQL
databases are in ``tests/interop/test_store_databases_interop.py``.
"""

import io
import json

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client as HttpClient
from django.urls import reverse

from syncapp import storage
from syncapp.models import Store, StorePlacement
from syncapp.storage import db, placement, schema
from tests.support.chains import batch, no_args
from tests.support.v03_client import events, seq_nums

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True, databases=["default", "stores_b"])]

SPREAD = ("default", "stores_b")


@pytest.fixture
def spread(settings):
    settings.LIVESYNC = {**settings.LIVESYNC, "STORE_DATABASES": list(SPREAD)}


def store_ids_in(alias, prefix, count=1):
    """``count`` new storeIds starting with ``prefix`` whose stores go to database ``alias``."""
    found, number = [], 0
    while len(found) < count:
        candidate = f"{prefix}-{number}"
        if placement.home(candidate, SPREAD) == alias:
            found.append(candidate)
        number += 1
    return found


def databases_holding(store_id):
    """The aliases whose registry has ``store_id``, and those whose catalog has its table."""
    rows = [alias for alias in SPREAD if Store.objects.using(alias).filter(store_id=store_id).exists()]
    tables = [
        alias
        for alias in SPREAD
        for store in Store.objects.using(alias).filter(store_id=store_id)
        if schema._find_table(alias, store.table_name) is not None
    ]
    return rows, tables


def test_each_new_store_lives_wholly_in_the_database_its_store_id_picks(spread, store_id):
    store_ids = [f"{store_id}-{number}" for number in range(24)]
    for each in store_ids:
        storage.append(each, batch(1, 2), no_args)

    homes = {each: placement.home(each, SPREAD) for each in store_ids}
    assert set(homes.values()) == set(SPREAD)
    for each in store_ids:
        assert databases_holding(each) == ([homes[each]], [homes[each]])
        assert storage.head(each) == 2
        assert [event.seq_num for event in storage.read_page(each, 0, 10).events] == [1, 2]
    placements = dict(StorePlacement.objects.filter(store_id__in=store_ids).values_list("store_id", "database"))
    assert placements == homes
    ids = [pk for alias in SPREAD for pk in Store.objects.using(alias).values_list("pk", flat=True)]
    assert len(ids) == len(set(ids)) == len(store_ids)


def test_one_group_of_pushes_commits_in_both_databases(spread, store_id):
    (first,) = store_ids_in("default", store_id)
    (second,) = store_ids_in("stores_b", store_id)
    pendings = [storage.PendingAppend(each, batch(1, 3), no_args) for each in (first, second)]
    outcomes = storage.append_many(pendings)

    assert all(isinstance(outcome, storage.Appended) for outcome in outcomes), outcomes
    assert storage.heads([first, second, f"{store_id}-unknown"]) == {first: 3, second: 3}
    with pytest.raises(storage.ParentMismatch):
        storage.append(second, batch(3, 3, client_id="late"), no_args)


def test_adding_a_database_moves_no_existing_store(settings, store_id):
    existing = store_ids_in("stores_b", f"{store_id}-before", count=3)
    for each in existing:
        storage.append(each, batch(1, 2), no_args)
    settings.LIVESYNC = {**settings.LIVESYNC, "STORE_DATABASES": list(SPREAD)}

    for each in existing:
        storage.append(each, batch(3, 3), no_args)
        assert databases_holding(each)[0] == ["default"]
        assert storage.head(each) == 3
    (new,) = store_ids_in("stores_b", f"{store_id}-after")
    storage.append(new, batch(1, 1), no_args)
    assert databases_holding(new)[0] == ["stores_b"]


def test_reset_and_delete_act_in_the_stores_own_database(spread, store_id):
    (store,) = store_ids_in("stores_b", store_id)
    storage.append(store, batch(1, 4), no_args)
    backend_id = storage.get_store(store).backend_id

    storage.reset(store)
    assert storage.head(store) == 0 and storage.get_store(store).backend_id != backend_id
    storage.append(store, batch(1, 1), no_args)
    table = storage.get_store(store).table_name

    storage.delete(store)
    assert databases_holding(store) == ([], [])
    assert schema._find_table("stores_b", table) is None
    assert not StorePlacement.objects.filter(store_id=store).exists()


async def test_sockets_of_a_store_in_the_second_database_sync(spread, connect, store_id):
    (store,) = store_ids_in("stores_b", store_id)
    pusher, reader = await connect(store), await connect(store)
    await reader.pull_all("first-pull")
    await pusher.push("push-1", events(1, 2))
    assert await pusher.recv_text() == '{"_tag":"WSMessage.PushAck","requestId":"push-1"}'
    broadcast = await reader.recv()
    assert seq_nums(broadcast) == [1, 2]
    assert await db.run(storage.database_of, store) == "stores_b"


def run(*args):
    stdout = io.StringIO()
    call_command(*args, stdout=stdout, stderr=io.StringIO())
    return stdout.getvalue()


def test_the_store_list_and_the_transfer_commands_see_both_databases(spread, store_id, tmp_path):
    (first,) = store_ids_in("default", store_id)
    (second,) = store_ids_in("stores_b", store_id)
    storage.append(first, batch(1, 2), no_args)
    storage.append(second, batch(1, 5), no_args)

    listed = {line.split()[0]: line.split() for line in run("livesync_stores").splitlines()[1:-1]}
    assert listed[first][1] == "2" and listed[first][-1] == "default"
    assert listed[second][1] == "5" and listed[second][-1] == "stores_b"

    exported = tmp_path / "second.ndjson"
    run("livesync_export", second, "--output", str(exported))
    assert [json.loads(line)["seqNum"] for line in exported.read_text().splitlines()] == [1, 2, 3, 4, 5]
    (copy,) = store_ids_in("default", f"{store_id}-copy")
    run("livesync_import", copy, str(exported))
    assert storage.head(copy) == 5 and databases_holding(copy)[0] == ["default"]


@pytest.fixture
def admin_browser(django_user_model):
    client = HttpClient()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_the_admin_lists_each_database_and_opens_any_store_by_its_id(spread, admin_browser, store_id):
    (first,) = store_ids_in("default", store_id)
    (second,) = store_ids_in("stores_b", store_id)
    storage.append(first, batch(1, 1), no_args)
    storage.append(second, batch(1, 3), no_args)
    changelist = reverse("admin:syncapp_store_changelist")

    shown = admin_browser.get(changelist)
    assert [store.store_id for store in shown.context["cl"].result_list] == [first]
    in_second = admin_browser.get(changelist, {"database": "stores_b"})
    assert [store.store_id for store in in_second.context["cl"].result_list] == [second]

    pk = storage.get_store(second).pk
    page = admin_browser.get(reverse("admin:syncapp_store_change", args=[pk]))
    assert page.status_code == 200
    assert page.context["original"].store_id == second
    assert [event.seq_num for event, _ in page.context["event_rows"]] == [1, 2, 3]

    reset = admin_browser.post(reverse("admin:syncapp_store_reset", args=[pk]))
    assert reset.status_code == 302 and storage.head(second) == 0 and storage.head(first) == 1


def test_store_databases_must_be_databases_of_the_project(settings):
    from django.core import checks

    def errors(value):
        settings.LIVESYNC = {"STORE_DATABASES": value, "ALLOW_ANONYMOUS": True}
        return sorted(message.id for message in checks.run_checks() if message.id.startswith("syncapp.E"))

    assert errors(["default", "stores_b"]) == []
    assert errors(["default", "nowhere"]) == ["syncapp.E010"]
    assert errors(["default", "default"]) == ["syncapp.E010"]
    assert errors("default") == ["syncapp.E010"]
    assert errors(None) == []


def test_upgrading_records_that_existing_stores_live_in_the_default_database(store_id):
    """Migration 0004 places the stores made before it, under their own ids, and new ids follow theirs."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("syncapp", "0003_store_access")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_store = executor.loader.project_state(before).apps.get_model("syncapp", "Store")
    old = {
        old_store.objects.create(store_id=f"{store_id}-{n}", table_name=f"eventlog_7_old_{n}_{store_id[5:]}").pk
        for n in range(3)
    }
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("syncapp"))

    placed = StorePlacement.objects.filter(store_id__startswith=store_id)
    assert set(placed.values_list("pk", "database")) == {(pk, "default") for pk in old}
    storage.append(f"{store_id}-new", batch(1, 1), no_args)
    assert storage.get_store(f"{store_id}-new").pk > max(old)


@pytest.mark.skipif(connections["stores_b"].vendor != "sqlite", reason="locks the second database's file")
def test_a_database_that_fails_fails_only_the_pushes_to_its_stores(spread, store_id):
    import sqlite3

    (first,) = store_ids_in("default", store_id)
    (second,) = store_ids_in("stores_b", store_id)
    for each in (first, second):
        storage.append(each, batch(1, 1), no_args)
    second_database = connections["stores_b"]
    second_database.close()
    options = second_database.settings_dict["OPTIONS"]
    patient = options["timeout"]
    options["timeout"] = 0.2
    holder = sqlite3.connect(second_database.settings_dict["NAME"], isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        outcomes = storage.append_many([storage.PendingAppend(each, batch(2, 2), no_args) for each in (first, second)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        second_database.close()
        options["timeout"] = patient

    assert isinstance(outcomes[0], storage.Appended)
    assert "locked" in str(outcomes[1])
    assert storage.heads([first, second]) == {first: 2, second: 1}


def test_a_store_is_placed_once_and_only_where_it_was_placed_first(spread, store_id):
    a, b, c = (f"{store_id}-{name}" for name in "abc")
    first = placement.claim([a, b], "default")
    assert placement.claim([b, a], "default") == first and set(first) == {a, b}
    assert placement.claim([a, c], "stores_b") == {c: StorePlacement.objects.get(store_id=c).pk}
    assert placement.databases_of([a, b, c, f"{store_id}-d"]) == {a: "default", b: "default", c: "stores_b"}


def test_a_server_commit_joins_a_transaction_on_the_stores_own_database(spread, store_id):
    from django.db import transaction

    from syncapp import events

    (store,) = store_ids_in("stores_b", store_id)
    created = ("v1.TodoCreated", {"id": "t1", "text": "from the server"})
    with pytest.raises(RuntimeError), transaction.atomic(using="stores_b"):
        events.commit(store, [created])
        raise RuntimeError("the caller's own work failed")
    assert storage.head(store) == 0
    with transaction.atomic(using="stores_b"):
        assert events.commit(store, [created]) == [1]
    assert storage.head(store) == 1 and databases_holding(store)[0] == ["stores_b"]


# Server commits whose transactions mean what they say, wherever the store lives (syncapp.events.atomic)

CREATED = ("v1.TodoCreated", {"id": "t1", "text": "from the server"})


@pytest.fixture
def received():
    """What ``events_committed`` receivers were sent: ``(store_id, [seqNum, …])`` per batch."""
    from syncapp.signals import events_committed

    batches = []

    def receiver(sender, store_id, events, **kwargs):
        batches.append((store_id, [event.seq_num for event in events]))

    events_committed.connect(receiver)
    yield batches
    events_committed.disconnect(receiver)


def in_a_thread_of_its_own(function):
    """Run ``function`` in a new thread, as a request would, closing that thread's connections after it."""
    from asgiref.sync import sync_to_async

    def run_and_close():
        try:
            return function()
        finally:
            connections.close_all()

    return sync_to_async(run_and_close, thread_sensitive=False)()


@pytest.mark.parametrize("alias", SPREAD)
async def test_a_raise_inside_events_atomic_stores_and_sends_nothing_wherever_the_store_lives(
    spread, connect, received, store_id, alias
):
    from syncapp import events as server_events

    (store,) = store_ids_in(alias, store_id)
    await db.run(storage.append, store, batch(1, 1), no_args)
    reader = await connect(store)
    await reader.pull_all("first-pull")

    def rolled_back():
        with pytest.raises(RuntimeError), server_events.atomic(store):
            server_events.commit(store, [CREATED])
            raise RuntimeError("the caller's own work failed")

    await in_a_thread_of_its_own(rolled_back)
    assert await reader.nothing(timeout=0.5)
    assert await db.run(storage.head, store) == 1 and received == []

    @server_events.atomic(store)
    def committed():
        return server_events.commit(store, [CREATED])

    assert await in_a_thread_of_its_own(committed) == [2]
    assert seq_nums(await reader.recv()) == [2]
    assert received == [(store, [2])]


@pytest.mark.parametrize("alias", SPREAD)
def test_a_new_store_made_inside_a_rolled_back_events_atomic_is_not_made(spread, received, store_id, alias):
    from syncapp import events as server_events

    (store,) = store_ids_in(alias, store_id)
    with pytest.raises(RuntimeError), server_events.atomic(store):
        assert server_events.commit(store, [CREATED]) == [1]
        raise RuntimeError("the caller's own work failed")
    assert databases_holding(store) == ([], []) and received == []

    with server_events.atomic(store):
        assert server_events.commit(store, [CREATED]) == [1]
    assert databases_holding(store) == ([alias], [alias]) and received == [(store, [1])]


@pytest.mark.parametrize(("alias", "other"), [("stores_b", "default"), ("default", "stores_b")])
def test_a_commit_inside_another_databases_transaction_raises_and_writes_nothing(
    spread, received, store_id, alias, other
):
    """The issue's ``with transaction.atomic(): events.commit(…); raise``, for a store on another database:
    the events were stored and sent before the caller's transaction had decided."""
    from django.db import transaction

    from syncapp import events as server_events

    (store,) = store_ids_in(alias, store_id)
    with transaction.atomic(using=other):
        with pytest.raises(server_events.CommitOutsideStoreTransaction, match=f"kept in database '{alias}'"):
            server_events.commit(store, [CREATED])
        # Inside a transaction on the store's database as well, the commit is part of that one.
        with server_events.atomic(store):
            assert server_events.commit(store, [CREATED]) == [1]
    assert storage.head(store) == 1 and received == [(store, [1])]


def test_an_independent_commit_commits_at_once_whatever_becomes_of_the_callers_transaction(spread, received, store_id):
    from django.db import transaction

    from syncapp import events as server_events

    (store,) = store_ids_in("stores_b", store_id)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert server_events.commit(store, [CREATED], independent=True) == [1]
        assert received == [(store, [1])]
        raise RuntimeError("the caller's own work failed")
    assert storage.head(store) == 1
    with pytest.raises(server_events.CommitRefused):
        server_events.commit("bad\nid", [CREATED], independent=True)
