"""The 0.4 WebSocket endpoint (``makeWsSync``) as a client sees it: Effect RPC frames, paging, live pulls, errors."""

import asyncio
import json

import pytest
from django.test import override_settings

from syncapp import storage
from syncapp.core import eventlog
from syncapp.models import Store
from syncapp.protocol.wire import Event
from syncapp.storage import db
from tests.support.v03_client import Client
from tests.support.v04_client import RpcClient, event, events, request, seq_nums

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def rpc(store_id):
    """Open connected 0.4 clients; all are closed after the test."""
    clients = []

    async def open_client(target_store_id=None, payload=None, **kwargs):
        client = RpcClient(target_store_id or store_id, payload, **kwargs)
        clients.append(client)
        connected, _ = await client.connect()
        assert connected
        return client

    yield open_client
    for client in clients:
        if client.connected:
            await client.close()


async def backend_id_of(client, request_id="bid"):
    chunks, _exit = await client.pull_pages(request_id)
    return chunks[0]["values"][0]["backendId"]


async def test_ping_answers_pong_on_any_path(rpc):
    for path in ("/", "/api/sync", "/websocket"):
        client = await rpc(path=path)
        await client.send('{"_tag":"Ping"}')
        assert await client.recv_text() == '{"_tag":"Pong"}'


async def test_empty_store_pull_is_one_empty_page_with_a_stable_backend_id(rpc):
    client = await rpc()
    chunks, exit_frame = await client.pull_pages("1")
    [chunk] = chunks
    [response] = chunk["values"]
    assert response["batch"] == [] and response["pageInfo"] == {"_tag": "NoMore"}
    assert len(response["backendId"]) == 21
    assert exit_frame == {"_tag": "Exit", "requestId": "1", "exit": {"_tag": "Success"}}
    assert await backend_id_of(await rpc(), "2") == response["backendId"]


async def test_push_then_non_live_pull_in_pages_of_100_counting_down(rpc):
    client = await rpc()
    for first in (1, 101, 201):
        await client.push(str(first), events(first, first + 99 if first < 201 else 250))
        assert await client.recv_text() == (
            f'{{"_tag":"Exit","requestId":"{first}","exit":{{"_tag":"Success","value":{{}}}}}}'
        )
    chunks, exit_frame = await client.pull_pages("pull")
    assert [seq_nums(chunk)[0:1] + seq_nums(chunk)[-1:] for chunk in chunks] == [[1, 100], [101, 200], [201, 250]]
    assert [chunk["values"][0]["pageInfo"] for chunk in chunks] == [
        {"_tag": "MoreKnown", "remaining": 150},
        {"_tag": "MoreKnown", "remaining": 50},
        {"_tag": "NoMore"},
    ]
    assert exit_frame["exit"] == {"_tag": "Success"}
    item = chunks[0]["values"][0]["batch"][0]
    assert item["eventEncoded"] == event(1)
    assert item["metadata"]["_tag"] == "Some"
    assert item["metadata"]["value"]["_tag"] == "SyncMessage.SyncMetadata"
    backend_id = chunks[0]["values"][0]["backendId"]
    tail, _ = await client.pull_pages("tail", after=240, backend_id=backend_id)
    assert [seq_nums(chunk) for chunk in tail] == [list(range(241, 251))]


async def test_stale_push_gets_server_ahead_error_and_writes_nothing(rpc, store_id):
    client = await rpc()
    await client.push("a", events(1, 5))
    await client.recv()
    await client.push("b", [event(10)])
    assert await client.recv_text() == (
        '{"_tag":"Exit","requestId":"b","exit":{"_tag":"Failure","cause":{"_tag":"Fail","error":'
        '{"minimumExpectedNum":5,"providedNum":9,"_tag":"ServerAheadError"}}}}'
    )
    await client.push("c", [event(1, client_id="late")])
    assert (await client.recv())["exit"]["cause"]["error"] == {
        "minimumExpectedNum": 5,
        "providedNum": 0,
        "_tag": "ServerAheadError",
    }
    assert await db.run(storage.head, store_id) == 5


async def test_foreign_backend_id_fails_pulls_and_pushes_with_mismatch(rpc, store_id):
    client = await rpc()
    backend_id = await backend_id_of(client)
    await client.pull("p", live=False, after=3, backend_id="stale-backend-id")
    assert await client.recv_text() == (
        '{"_tag":"Exit","requestId":"p","exit":{"_tag":"Failure","cause":{"_tag":"Fail","error":'
        f'{{"expected":"{backend_id}","received":"stale-backend-id","_tag":"BackendIdMismatchError"}}}}}}}}'
    )
    await client.push("q", [event(1)], backend_id="stale-backend-id")
    assert (await client.recv())["exit"]["cause"]["error"]["_tag"] == "BackendIdMismatchError"
    await client.push("r", [event(1)], backend_id=backend_id)
    assert (await client.recv())["exit"] == {"_tag": "Success", "value": {}}
    assert await db.run(storage.head, store_id) == 1


async def test_live_pull_delivers_every_push_including_the_pushers_own_before_its_exit(rpc):
    """As the reference does: the pusher's live pull gets the push's events, then the push gets its Exit."""
    pusher = await rpc()
    watcher = await rpc()
    await pusher.pull("live", live=True)
    await watcher.pull("live-w", live=True)
    assert (await pusher.recv())["values"][0]["pageInfo"] == {"_tag": "NoMore"}
    await watcher.recv()
    await pusher.push("push-1", events(1, 3))
    chunk, exit_frame = await pusher.recv(), await pusher.recv()
    assert chunk["_tag"] == "Chunk" and chunk["requestId"] == "live" and seq_nums(chunk) == [1, 2, 3]
    assert chunk["values"][0]["pageInfo"] == {"_tag": "NoMore"}
    assert exit_frame["_tag"] == "Exit" and exit_frame["requestId"] == "push-1"
    echoed = await watcher.recv()
    assert echoed["requestId"] == "live-w" and seq_nums(echoed) == [1, 2, 3]
    assert await pusher.nothing() and await watcher.nothing()


async def test_non_live_pulls_get_no_broadcasts(rpc):
    reader = await rpc()
    await reader.pull_pages("once")
    writer = await rpc()
    await writer.push("w", [event(1)])
    await writer.recv()
    assert await reader.nothing()


async def test_catch_up_hands_over_to_live_without_gap_or_duplicate(rpc, settings):
    """Pushes that commit while a long catch-up streams arrive once each, after it, in order."""
    writer = await rpc()
    for first in range(1, 1501, 100):
        await writer.push(f"seed-{first}", events(first, first + 99))
        await writer.recv()
    settings.LIVESYNC = {"ON_PULL_RES": "tests.support.hooks.pause"}
    reader = await rpc()
    await reader.pull("live", live=True)
    received = seq_nums(await reader.recv())
    for n in range(1501, 1521):
        await writer.push(f"w{n}", [event(n)])
        assert (await writer.recv())["exit"]["_tag"] == "Success"
    received += seq_nums(await reader.recv())
    assert received[-1] < 1501, "the pushes must commit while the catch-up still streams"
    page_infos = []
    while not await reader.nothing(0.5):
        chunk = await reader.recv()
        received += seq_nums(chunk)
        page_infos.append(chunk["values"][0]["pageInfo"]["_tag"])
    assert received == list(range(1, 1521))
    assert page_infos[-1] == "NoMore"


async def test_interrupt_ends_a_live_pull(rpc):
    reader = await rpc()
    await reader.pull("live", live=True)
    await reader.recv()
    await reader.send({"_tag": "Interrupt", "requestId": "live"})
    exit_frame = await reader.recv()
    assert exit_frame["requestId"] == "live" and exit_frame["exit"]["_tag"] == "Failure"
    assert exit_frame["exit"]["cause"]["_tag"] == "Interrupt"
    await reader.send({"_tag": "Interrupt", "requestId": "never-existed"})
    writer = await rpc()
    await writer.push("w", [event(1)])
    await writer.recv()
    assert await reader.nothing()


async def test_several_live_pulls_on_one_socket_each_get_every_batch(rpc):
    client = await rpc()
    await client.pull("a", live=True)
    await client.pull("b", live=True)
    await client.recv()
    await client.recv()
    writer = await rpc()
    await writer.push("w", events(1, 2))
    await writer.recv()
    chunks = [await client.recv(), await client.recv()]
    assert sorted((chunk["requestId"], tuple(seq_nums(chunk))) for chunk in chunks) == [
        ("a", (1, 2)),
        ("b", (1, 2)),
    ]


async def test_gap_in_broadcasts_is_repaired_per_live_pull(rpc, store_id):
    reader = await rpc()
    await reader.pull("live", live=True)
    await reader.recv()
    # Committed without a broadcast, as when another process dies between commit and announce.
    await db.run(storage.append, store_id, [Event(**event(n)) for n in (1, 2)], lambda e: None)
    writer = await rpc()
    await writer.push("w", [event(3)])
    await writer.recv()
    received = []
    while not await reader.nothing(0.5):
        received += seq_nums(await reader.recv())
    assert received == [1, 2, 3]


async def test_mixed_generations_see_each_others_events(rpc, connect):
    modern = await rpc()
    classic = await connect()
    await modern.pull("live", live=True)
    await modern.recv()
    await classic.pull_all("pull")
    await classic.push("classic-1", events(1, 2, client_id="classic"))
    assert (await classic.recv())["_tag"] == "WSMessage.PushAck"
    echo = await classic.recv()
    assert echo["_tag"] == "WSMessage.PullRes"
    modern_sees = await modern.recv()
    assert seq_nums(modern_sees) == [1, 2]
    backend_id = modern_sees["values"][0]["backendId"]
    await modern.push("modern-3", events(3, 4, client_id="modern"), backend_id=backend_id)
    frames = [await modern.recv(), await modern.recv()]
    assert {frame["_tag"] for frame in frames} == {"Exit", "Chunk"}
    classic_sees = await classic.recv()
    assert classic_sees["_tag"] == "WSMessage.PullRes"
    assert [item["eventEncoded"] for item in classic_sees["batch"]] == events(3, 4, client_id="modern")


async def generations_seen(store_id):
    """The Store row's last-seen times of its 0.3 and 0.4 clients (what the admin's column shows)."""
    return await db.run(
        lambda: Store.objects.filter(store_id=store_id).values_list("last_v03_client_at", "last_v04_client_at").get()
    )


async def test_the_store_records_each_protocol_generation_its_clients_speak(rpc, connect, store_id):
    classic = await connect()
    await classic.push("classic-1", events(1, 1, client_id="classic"))
    assert (await classic.recv())["_tag"] == "WSMessage.PushAck"
    v03_seen, v04_seen = await generations_seen(store_id)
    assert v03_seen is not None and v04_seen is None
    # A 0.4 client that only connects is recorded too, in the background of its handshake.
    await rpc()
    for _ in range(50):
        v03_seen, v04_seen = await generations_seen(store_id)
        if v04_seen is not None:
            break
        await asyncio.sleep(0.1)
    assert v04_seen is not None and v04_seen >= v03_seen


async def test_a_client_that_pushes_right_after_connecting_is_recorded_by_its_push_alone(
    connect, store_id, monkeypatch
):
    monkeypatch.setattr(eventlog, "CLIENT_NOTE_DELAY_SECONDS", 0.2)
    recorded_on_connect = []
    record = storage.note_client
    monkeypatch.setattr(storage, "note_client", lambda *key: recorded_on_connect.append(key) or record(*key))
    classic = await connect()
    await classic.push("classic-1", events(1, 1, client_id="classic"))
    assert (await classic.recv())["_tag"] == "WSMessage.PushAck"
    await asyncio.sleep(0.5)
    assert recorded_on_connect == []
    v03_seen, v04_seen = await generations_seen(store_id)
    assert v03_seen is not None and v04_seen is None
    # A client that does not push is recorded once the delay is over.
    await connect(f"{store_id}-reader")
    for _ in range(50):
        if recorded_on_connect:
            break
        await asyncio.sleep(0.1)
    assert recorded_on_connect == [(f"{store_id}-reader", "0.3")]


async def test_reset_gives_a_new_backend_id_and_closes_0_4_sockets(rpc, connect, store_id):
    modern = await rpc()
    await modern.pull("live", live=True)
    before = (await modern.recv())["values"][0]["backendId"]
    admin = await connect()
    await admin.send({"_tag": "WSMessage.AdminResetRoomReq", "requestId": "r", "adminSecret": "test-admin-secret"})
    assert (await admin.recv())["_tag"] == "WSMessage.AdminResetRoomRes"
    assert await modern.recv_output() == {"type": "websocket.close", "code": 1012}
    modern.connected = False
    returning = await rpc()
    await returning.pull("again", live=True, after=7, backend_id=before)
    failure = await returning.recv()
    assert failure["exit"]["cause"]["error"]["_tag"] == "BackendIdMismatchError"
    assert failure["exit"]["cause"]["error"]["received"] == before
    assert failure["exit"]["cause"]["error"]["expected"] != before


@pytest.mark.parametrize(
    ("frame", "defect"),
    [
        (request("7", "SyncWsRpc.Nope", {}), "Unknown request tag: SyncWsRpc.Nope"),
        (request("8", "SyncHttpRpc.Ping", {"storeId": "x"}), "Unknown request tag: SyncHttpRpc.Ping"),
    ],
)
async def test_unknown_rpcs_get_a_defect(rpc, frame, defect):
    client = await rpc()
    await client.send(frame)
    assert await client.recv() == {"_tag": "Defect", "defect": defect}


async def test_non_json_frame_gets_a_syntax_error_defect(rpc):
    client = await rpc()
    await client.send("this is not json")
    frame = await client.recv()
    assert frame["_tag"] == "Defect" and frame["defect"]["name"] == "SyntaxError"


async def test_payload_that_fails_its_schema_dies_with_the_references_text(rpc, store_id):
    client = await rpc()
    await client.send(request("101", "SyncWsRpc.Pull", {"storeId": store_id}))
    frame = await client.recv()
    assert frame["exit"]["cause"]["_tag"] == "Die"
    assert frame["exit"]["cause"]["defect"].endswith('\n└─ ["live"]\n   └─ is missing')
    assert frame["exit"]["cause"]["defect"].startswith("{ readonly storeId: string; readonly payload?: JsonValue")
    await client.push("102", [{**event(1), "seqNum": "1"}])
    frame = await client.recv()
    assert frame["exit"]["cause"]["defect"].endswith('\n└─ ["batch"][0]["seqNum"]\n   └─ Expected `int`, got `str`')
    assert await db.run(storage.head, store_id) == 0


async def test_broken_chain_is_refused_whole_with_unknown_error(rpc, store_id):
    client = await rpc()
    await client.push("x", [event(1), event(3)])
    error = (await client.recv())["exit"]["cause"]["error"]
    assert error["_tag"] == "UnknownError" and "Invalid batch" in error["cause"]
    assert await db.run(storage.head, store_id) == 0


@override_settings(LIVESYNC={"MAX_MESSAGE_BYTES": 10_000})
async def test_oversized_frame_is_refused_and_nothing_stored(rpc, store_id):
    client = await rpc()
    await client.push("big", [event(1, args={"text": "x" * 20_000})])
    frame = await client.recv()
    assert frame["_tag"] == "Defect" and "Message too large" in frame["defect"]
    assert await db.run(storage.head, store_id) == 0


async def test_pages_are_cut_at_900_kb(rpc):
    client = await rpc()
    big = "y" * 200_000
    for n in range(1, 6):
        await client.push(str(n), [event(n, args={"text": big})])
        await client.recv()
    chunks, _ = await client.pull_pages("pull")
    assert [seq_nums(chunk) for chunk in chunks] == [[1, 2, 3, 4], [5]]
    assert all(len(json.dumps(chunk["values"][0])) <= 900_000 for chunk in chunks)


@override_settings(LIVESYNC={"VALIDATE_PAYLOAD": "tests.support.hooks.reject_all"})
async def test_payload_validator_refuses_the_upgrade(store_id):
    refused = RpcClient(store_id, {"authToken": "wrong"})
    assert (await refused.connect())[0] is False


@override_settings(LIVESYNC={"ON_PUSH": "tests.support.hooks.reject_forbidden_push"})
async def test_rejecting_on_push_hook_fails_the_push_with_its_message(rpc, store_id):
    client = await rpc()
    await client.push("h", [event(1, name="v1.Forbidden")])
    error = (await client.recv())["exit"]["cause"]["error"]
    assert error == {"cause": "not allowed", "_tag": "UnknownError"}
    await client.push("ok", [event(1)])
    assert (await client.recv())["exit"]["_tag"] == "Success"
    assert await db.run(storage.head, store_id) == 1


async def test_concurrent_pushes_on_one_parent_one_wins(rpc, store_id):
    first, second = await rpc(), await rpc()
    await asyncio.gather(first.push("a", [event(1, client_id="a")]), second.push("b", [event(1, client_id="b")]))
    outcomes = sorted([(await first.recv())["exit"]["_tag"], (await second.recv())["exit"]["_tag"]])
    assert outcomes == ["Failure", "Success"]
    assert await db.run(storage.head, store_id) == 1


async def test_0_3_endpoint_is_unchanged_beside_0_4(store_id):
    classic = Client(store_id, path="/websocket")
    assert (await classic.connect())[0]
    await classic.send({"_tag": "WSMessage.Ping", "requestId": "ping"})
    assert await classic.recv_text() == '{"_tag":"WSMessage.Pong","requestId":"ping"}'
    await classic.close()


async def test_a_retried_push_succeeds_and_live_pulls_get_only_its_new_events(rpc, store_id):
    watcher = await rpc()
    await watcher.pull("live", live=True)
    await watcher.recv()
    first = await rpc()
    await first.push("1", [event(1)])
    await first.recv()
    assert seq_nums(await watcher.recv()) == [1]
    retrying = await rpc()
    await retrying.push("again", events(1, 3))
    assert (await retrying.recv())["exit"] == {"_tag": "Success", "value": {}}
    assert seq_nums(await watcher.recv()) == [2, 3]
    assert await db.run(storage.head, store_id) == 3


async def test_a_stale_or_foreign_push_is_answered_as_such_even_with_a_broken_chain(rpc, store_id):
    """The client rebases on ServerAheadError; an UnknownError for the chain would have it retry the batch forever."""
    client = await rpc()
    await client.push("1", events(1, 2))
    await client.recv()
    broken = [event(2), {**event(5), "parentSeqNum": 4}]
    await client.push("2", broken)
    assert (await client.recv())["exit"]["cause"]["error"] == {
        "minimumExpectedNum": 2,
        "providedNum": 1,
        "_tag": "ServerAheadError",
    }
    await client.push("3", [event(3), {**event(5), "parentSeqNum": 4}], backend_id="stale-backend-id")
    assert (await client.recv())["exit"]["cause"]["error"]["_tag"] == "BackendIdMismatchError"
    await client.push("4", [event(3), {**event(5), "parentSeqNum": 4}])
    assert (await client.recv())["exit"]["cause"]["error"]["_tag"] == "UnknownError"
    assert await db.run(storage.head, store_id) == 2


async def test_events_committed_without_any_broadcast_reach_live_pulls_by_the_head_check(rpc, store_id, settings):
    """As when the pushing process died between commit and broadcast: the hub's head check delivers them."""
    settings.LIVESYNC = {"HEAD_CHECK_INTERVAL": 0.1}
    reader = await rpc()
    await reader.pull("live", live=True)
    await reader.recv()
    await db.run(storage.append, store_id, [Event(**event(n)) for n in (1, 2, 3)], lambda e: None)
    healed = await reader.recv(timeout=5)
    assert healed["requestId"] == "live" and seq_nums(healed) == [1, 2, 3]
    assert healed["values"][0]["pageInfo"] == {"_tag": "NoMore"}
    assert await reader.nothing()
