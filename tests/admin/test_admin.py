"""The Store admin: change list, a store's events, and the reset, export and delete actions, per permission.

Runs on both backends (``-m protocol``): reset and delete reach the store's
sockets through the channel layer, and the socket count reads it.
"""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from syncapp import admin as store_admin
from syncapp import storage
from syncapp.models import Store
from syncapp.protocol import wire
from syncapp.storage import schema, tables

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

CHANGELIST = reverse("admin:syncapp_store_changelist")


def push(store_id, first, last, name="v1.TodoCreated", client_id="client-a"):
    batch = [
        wire.Event(
            name=name,
            args=wire.Raw(json.dumps({"id": f"todo-{n}", "done": False}, separators=(",", ":")).encode()),
            seqNum=n,
            parentSeqNum=n - 1,
            clientId=client_id,
            sessionId="session-1",
        )
        for n in range(first, last + 1)
    ]
    storage.append(store_id, batch, lambda event: bytes(event.args).decode())


def store_url(store_id, view="change"):
    return reverse(f"admin:syncapp_store_{view}", args=[Store.objects.get(store_id=store_id).pk])


def browser(user):
    client = HttpClient()
    client.force_login(user)
    return client


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def staff(django_user_model):
    """``staff(*codenames)``: a staff user with exactly these Store permissions."""

    def make(*codenames):
        user = django_user_model.objects.create_user(f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="syncapp", codename__in=codenames))
        return user

    return make


def streamed(response):
    """The body of a streaming response whose content is an async iterator (as the ASGI server reads it)."""

    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def action(client, name, *store_ids, confirm=False):
    data = {"action": name, "_selected_action": [Store.objects.get(store_id=s).pk for s in store_ids]}
    if confirm:
        data["post"] = "yes"
    return client.post(CHANGELIST, data)


# The change list


def test_change_list_shows_stores_by_activity_and_finds_them_by_store_id(superuser, store_id):
    push(f"{store_id}-old", 1, 2)
    push(store_id, 1, 5)
    response = browser(superuser).get(CHANGELIST)
    assert response.status_code == 200
    stores = list(response.context["cl"].result_list)
    assert [s.store_id for s in stores] == [store_id, f"{store_id}-old"]
    html = response.content.decode()
    for header in ("StoreId", "Table name", "Head", "Events", "Created at", "Updated (last push)", "Connected sockets"):
        assert header in html
    assert Store.objects.get(store_id=store_id).table_name in html

    found = browser(superuser).get(CHANGELIST, {"q": f"{store_id}-old"})
    assert [s.store_id for s in found.context["cl"].result_list] == [f"{store_id}-old"]


def _changelist_queries(user, **params):
    with CaptureQueriesContext(connection) as queries:
        response = browser(user).get(CHANGELIST, params)
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


def test_change_list_costs_the_same_queries_for_5_stores_as_for_40(superuser, store_id):
    """No query per listed store (into its table or otherwise), and no second count of the registry."""
    for number in range(5):
        push(f"{store_id}-{number}", 1, 1)
    _, few = _changelist_queries(superuser)
    for number in range(5, 40):
        push(f"{store_id}-{number}", 1, 1)
    response, many = _changelist_queries(superuser)
    assert len(response.context["cl"].result_list) == 40
    assert len(many) == len(few)
    assert not any(tables.TABLE_PREFIX in sql for sql in many)
    assert sum("COUNT(" in sql.upper() for sql in many) <= 1


def test_change_list_search_is_a_storeid_prefix_the_index_answers(superuser, store_id):
    for name in ("team-a", "team-b", "Team-c", "other-team-d"):
        push(f"{store_id}.{name}", 1, 1)
    response, queries = _changelist_queries(superuser, q=f"{store_id}.team-")
    assert sorted(s.store_id for s in response.context["cl"].result_list) == [
        f"{store_id}.team-a",
        f"{store_id}.team-b",
    ]
    search = next(sql for sql in queries if "syncapp_store" in sql and "ORDER BY" in sql)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")  # a table this small is scanned unless scanning is off
            cursor.execute("EXPLAIN " + search)
            plan = " ".join(str(row) for row in cursor.fetchall())
            cursor.execute("SET enable_seqscan = on")
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + search)
            plan = " ".join(str(row) for row in cursor.fetchall())
    # The storeId index itself, searched by a range (not a scan of another index filtered row by row).
    by_store_id = ("USING INDEX sqlite_autoindex_syncapp_store_1 (store_id>? AND store_id<?)", "_store_id_")
    assert any(index in plan for index in by_store_id) and "Seq Scan" not in plan, plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="an estimate is read on PostgreSQL only")
def test_a_large_store_list_is_numbered_by_the_planners_estimate(superuser, store_id, monkeypatch):
    from syncapp.admin import store_list

    for number in range(30):
        push(f"{store_id}-{number}", 1, 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE syncapp_store")
    monkeypatch.setattr(store_list, "ESTIMATE_COUNT_FROM", 10)
    response, queries = _changelist_queries(superuser)
    assert not any("COUNT(" in sql.upper() and "syncapp_store" in sql for sql in queries), queries
    assert response.context["cl"].result_count == 30
    searched, _ = _changelist_queries(superuser, q=f"{store_id}-1")
    assert searched.context["cl"].result_count == 11


async def test_change_list_counts_connected_sockets(connect, superuser, store_id):
    await connect()
    await connect()
    await sync_to_async(push)(store_id, 1, 1)
    await sync_to_async(push)(f"{store_id}-quiet", 1, 1)

    async def counts():
        response = await sync_to_async(lambda: browser(superuser).get(CHANGELIST))()
        return {s.store_id: s.socket_count for s in response.context["cl"].result_list}

    expected = {store_id: 2, f"{store_id}-quiet": 0}
    if not isinstance(get_channel_layer(), InMemoryChannelLayer):
        # With Redis, each process records its counts there at its next head check (syncapp.fanout.presence).
        for _ in range(40):
            if await counts() == expected:
                break
            await asyncio.sleep(0.1)
    assert await counts() == expected


async def test_change_list_shows_which_protocol_generations_clients_used(connect, superuser, store_id):
    from tests.support.v04_client import RpcClient

    await sync_to_async(push)(store_id, 1, 1)
    await sync_to_async(push)(f"{store_id}-classic", 1, 1)
    await connect()
    await connect(f"{store_id}-classic")
    modern = RpcClient(store_id)
    assert (await modern.connect())[0]
    await modern.close()
    # Connections are recorded in the background of their handshakes: give them a moment.
    for _ in range(50):
        response = await sync_to_async(lambda: browser(superuser).get(CHANGELIST))()
        admin = response.context["cl"].model_admin
        shown = {s.store_id: admin.client_generations(s) for s in response.context["cl"].result_list}
        if "0.3" in shown[f"{store_id}-classic"] and "0.4" in shown[store_id]:
            break
        await asyncio.sleep(0.1)
    assert shown[store_id].startswith("0.4 (") and ", 0.3 (" in shown[store_id]
    assert shown[f"{store_id}-classic"].startswith("0.3 (") and "0.4" not in shown[f"{store_id}-classic"]
    assert "Client protocols (last seen)" in response.content.decode()


def test_nothing_without_a_store_permission(staff, store_id):
    push(store_id, 1, 1)
    client = browser(staff())
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(store_url(store_id)).status_code == 403
    assert client.get(store_url(store_id, "export")).status_code == 403


# A store's page and its events


def test_store_page_shows_one_page_of_events_with_pretty_args(superuser, store_id):
    push(store_id, 1, 120)
    client = browser(superuser)
    with CaptureQueriesContext(connection) as queries:
        first = client.get(store_url(store_id))
    assert first.status_code == 200
    assert [event.seq_num for event, _ in first.context["event_rows"]] == list(range(1, 51))
    html = first.content.decode()
    assert "<pre>{\n  &quot;id&quot;: &quot;todo-1&quot;,\n  &quot;done&quot;: false\n}</pre>" in html
    assert "Page 1 of 3 (120 events)" in html
    table = Store.objects.get(store_id=store_id).table_name
    event_queries = [q["sql"] for q in queries.captured_queries if table in q["sql"]]
    assert event_queries and all("COUNT(" not in sql.upper() for sql in event_queries)
    assert any("LIMIT 50" in sql for sql in event_queries)

    last = client.get(store_url(store_id), {"events_page": 3})
    assert [event.seq_num for event, _ in last.context["event_rows"]] == list(range(101, 121))


def test_store_page_shows_args_too_deep_for_python_as_stored(superuser, store_id):
    # Deeper than the nesting limit (wire.MAX_ARGS_DEPTH), rather than than Python's json, whose depth differs
    # between Pythons: shown as stored, and cut, as anything long is (see tests/protocol/test_nesting.py).
    deep = "[" * 5000 + "]" * 5000
    event = wire.Event(
        name="v1.Deep", args=wire.Raw(deep.encode()), seqNum=1, parentSeqNum=0, clientId="c", sessionId="s"
    )
    storage.append(store_id, [event], lambda stored: bytes(stored.args).decode())
    page = browser(superuser).get(store_url(store_id))
    assert page.status_code == 200
    html = page.content.decode()
    assert f"<pre>{deep[: store_admin.ARGS_SHOWN_CHARS]}</pre>" in html
    assert "the first 4,000 of 10,000 characters" in html


def test_store_events_filter_by_name_and_client_id(superuser, store_id):
    push(store_id, 1, 3)
    push(store_id, 4, 5, name="v1.TodoCompleted")
    push(store_id, 6, 8, name="v1.TodoCompleted", client_id="client-b")
    client = browser(superuser)

    def shown(**params):
        response = client.get(store_url(store_id), params)
        return [event.seq_num for event, _ in response.context["event_rows"]], response.content.decode()

    assert shown(event_name="v1.TodoCompleted")[0] == [4, 5, 6, 7, 8]
    assert shown(event_client_id="client-b")[0] == [6, 7, 8]
    seq_nums, html = shown(event_name="v1.TodoCompleted", event_client_id="client-a")
    assert seq_nums == [4, 5] and "(2 events)" in html
    assert shown(event_name="v1.Nothing")[1].count("No events match.") == 1


def test_store_page_is_read_only_for_everyone(superuser, staff, store_id):
    push(store_id, 1, 2)
    for user in (superuser, staff("view_store")):
        client = browser(user)
        html = client.get(store_url(store_id)).content.decode()
        assert 'name="_save"' not in html and 'name="_continue"' not in html
        assert client.post(store_url(store_id), {}).status_code == 403
    assert storage.head(store_id) == 2


# Reset


def test_reset_action_confirms_then_clears_events_and_head(superuser, store_id):
    push(store_id, 1, 4)
    push(f"{store_id}-kept", 1, 1)
    client = browser(superuser)
    confirmation = action(client, "reset_stores", store_id)
    assert confirmation.status_code == 200
    assert "syncapp/admin/store_reset_confirmation.html" in [t.name for t in confirmation.templates]
    assert f"{store_id}: 4 events" in confirmation.content.decode()
    assert storage.head(store_id) == 4

    done = action(client, "reset_stores", store_id, confirm=True)
    assert done.status_code == 302
    assert storage.head(store_id) == 0 and storage.read_page(store_id, 0, 10).events == []
    assert storage.head(f"{store_id}-kept") == 1
    entry = LogEntry.objects.get(object_id=str(Store.objects.get(store_id=store_id).pk))
    assert entry.action_flag == CHANGE and "4 events deleted" in entry.get_change_message()


def test_reset_from_the_store_page(superuser, store_id):
    push(store_id, 1, 3)
    client = browser(superuser)
    assert "Reset…" in client.get(store_url(store_id)).content.decode()
    assert "Yes, reset" in client.get(store_url(store_id, "reset")).content.decode()
    assert storage.head(store_id) == 3
    response = client.post(store_url(store_id, "reset"), {"post": "yes"})
    assert response.status_code == 302 and response["Location"] == store_url(store_id)
    assert storage.head(store_id) == 0


def test_reset_needs_the_change_permission(staff, store_id):
    push(store_id, 1, 3)
    viewer = browser(staff("view_store"))
    changelist = viewer.get(CHANGELIST)
    assert [name for name, _ in changelist.context["action_form"].fields["action"].choices] == ["", "export_store"]
    assert "Reset…" not in viewer.get(store_url(store_id)).content.decode()
    action(viewer, "reset_stores", store_id, confirm=True)
    assert viewer.get(store_url(store_id, "reset")).status_code == 403
    assert viewer.post(store_url(store_id, "reset"), {"post": "yes"}).status_code == 403
    assert storage.head(store_id) == 3

    changer = browser(staff("view_store", "change_store"))
    action(changer, "reset_stores", store_id, confirm=True)
    assert storage.head(store_id) == 0


async def test_reset_disconnects_the_stores_sockets(connect, superuser, store_id):
    socket = await connect()
    await sync_to_async(push)(store_id, 1, 2)
    await sync_to_async(lambda: action(browser(superuser), "reset_stores", store_id, confirm=True))()
    assert await socket.recv_output() == {"type": "websocket.close", "code": 1012}


# Export


def test_export_action_downloads_the_store_as_ndjson(staff, store_id):
    push(store_id, 1, 3)
    viewer = browser(staff("view_store"))
    response = action(viewer, "export_store", store_id)
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == f'attachment; filename="{store_id}.ndjson"'
    lines = [json.loads(line) for line in streamed(response).decode().splitlines()]
    stored = storage.read_page(store_id, 0, 10).events
    assert lines == [
        {
            "name": e.name,
            "args": json.loads(e.args),
            "seqNum": e.seq_num,
            "parentSeqNum": e.parent_seq_num,
            "clientId": e.client_id,
            "sessionId": e.session_id,
            "createdAt": e.created_at,
        }
        for e in stored
    ]
    # The store page's "Export NDJSON" link serves the same file.
    assert streamed(viewer.get(store_url(store_id, "export"))) == streamed(action(viewer, "export_store", store_id))


def test_export_action_wants_exactly_one_store(superuser, store_id):
    push(store_id, 1, 1)
    push(f"{store_id}-2", 1, 1)
    response = browser(superuser).post(
        CHANGELIST,
        {"action": "export_store", "_selected_action": list(Store.objects.values_list("pk", flat=True))},
        follow=True,
    )
    assert "Select exactly one store to export" in response.content.decode()


# Delete


def test_delete_confirms_then_drops_table_and_row(superuser, store_id):
    push(store_id, 1, 4)
    table = Store.objects.get(store_id=store_id).table_name
    client = browser(superuser)
    confirmation = client.get(store_url(store_id, "delete"))
    assert f"drops its table {table} with its 4 events" in confirmation.content.decode()
    assert schema._find_table("default", table) is not None

    assert client.post(store_url(store_id, "delete"), {"post": "yes"}).status_code == 302
    assert storage.get_store(store_id) is None
    assert schema._find_table("default", table) is None


def test_delete_selected_confirms_then_drops_every_table(superuser, store_id):
    ids = [store_id, f"{store_id}-2"]
    for each in ids:
        push(each, 1, 2)
    tables = [Store.objects.get(store_id=each).table_name for each in ids]
    client = browser(superuser)
    confirmation = action(client, "delete_selected", *ids)
    html = confirmation.content.decode()
    assert all(f"table {table}, 2 events" in html for table in tables)
    action(client, "delete_selected", *ids, confirm=True)
    assert not Store.objects.filter(store_id__in=ids).exists()
    assert all(schema._find_table("default", table) is None for table in tables)


def test_delete_needs_the_delete_permission(staff, store_id):
    push(store_id, 1, 1)
    viewer = browser(staff("view_store", "change_store"))
    assert viewer.get(store_url(store_id, "delete")).status_code == 403
    action(viewer, "delete_selected", store_id, confirm=True)
    assert storage.get_store(store_id) is not None

    deleter = browser(staff("view_store", "delete_store"))
    assert deleter.post(store_url(store_id, "delete"), {"post": "yes"}).status_code == 302
    assert storage.get_store(store_id) is None


async def test_delete_disconnects_the_stores_sockets(connect, superuser, store_id):
    socket = await connect()
    await sync_to_async(push)(store_id, 1, 1)
    url = await sync_to_async(store_url)(store_id, "delete")
    await sync_to_async(lambda: browser(superuser).post(url, {"post": "yes"}))()
    assert await socket.recv_output() == {"type": "websocket.close", "code": 1012}


def test_a_store_added_in_the_admin_is_created_with_its_table(superuser, store_id):
    client = browser(superuser)
    form = client.get(reverse("admin:syncapp_store_add"))
    assert form.status_code == 200 and 'name="store_id"' in form.content.decode()
    answer = client.post(reverse("admin:syncapp_store_add"), {"store_id": store_id})
    assert answer.status_code == 302, answer.content.decode()[:500]
    store = Store.objects.get(store_id=store_id)
    assert schema._find_table("default", store.table_name) is not None
    assert storage.head(store_id) == 0 and storage.read_page(store_id, 0, 10).events == []
    again = client.post(reverse("admin:syncapp_store_add"), {"store_id": store_id})
    assert again.status_code == 200 and "already exists" in again.content.decode()
    unusable = client.post(reverse("admin:syncapp_store_add"), {"store_id": "tab\there"})
    assert unusable.status_code == 200 and "printable characters" in unusable.content.decode()
    assert not Store.objects.filter(store_id="tab\there").exists()


def test_adding_stores_needs_the_add_permission(staff, store_id):
    client = browser(staff("view_store"))
    assert client.get(reverse("admin:syncapp_store_add")).status_code == 403


# Stores on two databases (LIVESYNC["STORE_DATABASES"], as in tests/storage/test_store_databases.py)

on_two_databases = pytest.mark.django_db(transaction=True, databases=["default", "stores_b"])


@pytest.fixture
def spread(settings):
    from tests.storage.test_store_databases import SPREAD

    settings.LIVESYNC = {**settings.LIVESYNC, "STORE_DATABASES": list(SPREAD)}


def stores_in(alias, prefix, count=1):
    from tests.storage.test_store_databases import store_ids_in

    return store_ids_in(alias, prefix, count)


def shown_databases(response):
    return {store.store_id: store._state.db for store in response.context["cl"].result_list}


@on_two_databases
def test_a_search_without_a_database_finds_stores_in_every_database(spread, superuser, store_id):
    """A storeId's store is found wherever it lives: the issue's ``?q=big-1234`` listed the default
    database's stores starting with it, but not ``big-1234`` itself, on the second database."""
    (wanted,) = stores_in("stores_b", store_id)
    beside = stores_in("default", wanted, count=2)
    for each in (wanted, *beside):
        push(each, 1, 1)

    response = browser(superuser).get(CHANGELIST, {"q": wanted})
    assert shown_databases(response) == {wanted: "stores_b", beside[0]: "default", beside[1]: "default"}
    html = response.content.decode()
    assert "column-database" in html and "All (this search)" in html
    # Actions act on one database's queryset: none is offered for rows of several.
    assert response.context["action_form"] is None
    assert browser(superuser).get(store_url_in("stores_b", wanted)).status_code == 200

    exact = browser(superuser).get(CHANGELIST, {"q": beside[1]})
    assert shown_databases(exact) == {beside[1]: "default"}
    chosen = browser(superuser).get(CHANGELIST, {"q": wanted, "database": "stores_b"})
    assert shown_databases(chosen) == {wanted: "stores_b"}
    assert chosen.context["action_form"] is not None


def store_url_in(alias, store_id):
    return reverse("admin:syncapp_store_change", args=[Store.objects.using(alias).get(store_id=store_id).pk])


@on_two_databases
def test_a_search_across_databases_shows_a_page_of_each_and_the_exact_store_wherever_it_ranks(
    spread, superuser, store_id, monkeypatch
):
    monkeypatch.setattr(store_admin.StoreAdmin, "list_per_page", 3)
    (wanted,) = stores_in("stores_b", store_id)
    push(wanted, 1, 1)
    # Pushed later, so listed before the wanted store by activity.
    newer = stores_in("stores_b", wanted, count=5)
    for each in newer:
        push(each, 1, 1)
    (elsewhere,) = stores_in("default", wanted)
    push(elsewhere, 1, 1)

    response = browser(superuser).get(CHANGELIST, {"q": wanted})
    shown = [store.store_id for store in response.context["cl"].result_list]
    assert sorted(shown) == sorted([*newer[-3:], wanted, elsewhere])
    assert shown.index(elsewhere) == 0 and shown[-1] == wanted, "merged by activity, most recent first"
    notes = [str(message) for message in response.context["messages"]]
    assert notes == [
        "More stores match in stores_b: the list shows the first 3 of each database. Choose a database to see them all."
    ]


@on_two_databases
def test_an_unknown_database_filter_says_so_instead_of_showing_another_database(spread, superuser, store_id):
    (wanted,) = stores_in("stores_b", store_id)
    push(wanted, 1, 1)
    client = browser(superuser)

    response = client.get(CHANGELIST, {"database": "stores_9", "q": wanted})
    assert response.status_code == 302 and response["Location"] == f"{CHANGELIST}?q={wanted}"
    followed = client.get(response["Location"])
    assert [str(message) for message in followed.context["messages"]] == [
        "There is no store database 'stores_9': LIVESYNC['STORE_DATABASES'] has default, stores_b."
    ]
    assert shown_databases(followed) == {wanted: "stores_b"}
    assert client.get(CHANGELIST, {"database": ""})["Location"] == CHANGELIST
