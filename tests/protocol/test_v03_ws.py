"""The 0.3 protocol as a client sees it, through the real consumer and storage.

This module runs twice in ``make test``: on SQLite + the in-memory channel layer
and on PostgreSQL + Redis (``LIVESYNC_TEST_BACKEND=postgres``).
"""

import asyncio
import hashlib

import pytest
from django.test import override_settings

from syncapp import storage
from syncapp.storage import db
from tests.support.v03_client import Client, event, events, seq_nums

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


async def assert_nothing_more(client):
    """Nothing but what the test received was sent to ``client``: the socket handles its frames and the store's
    messages in order, so a Ping sent now is answered after anything already on its way (a late duplicate too),
    however slow the machine."""
    await client.send({"_tag": "WSMessage.Ping", "requestId": "ping"})
    assert await client.recv() == {"_tag": "WSMessage.Pong", "requestId": "ping"}, "a frame no one expected"


async def frames_until_answer(client, request_id, limit=20):
    """The frames ``client`` receives up to and including the PushAck or Error that answers ``request_id``."""
    frames = []
    while len(frames) < limit:
        frames.append(await client.recv())
        if frames[-1]["_tag"] in ("WSMessage.PushAck", "WSMessage.Error") and frames[-1]["requestId"] == request_id:
            return frames
    raise AssertionError(f"no answer to {request_id} among {frames}")


async def test_ping_answers_pong(connect):
    client = await connect()
    await client.send('{"_tag":"WSMessage.Ping","requestId":"ping"}')
    assert await client.recv_text() == '{"_tag":"WSMessage.Pong","requestId":"ping"}'


async def test_ping_with_other_spacing_and_key_order_answers_pong(connect):
    client = await connect()
    await client.send('{ "requestId": "ping", "_tag": "WSMessage.Ping" }')
    assert await client.recv_text() == '{"_tag":"WSMessage.Pong","requestId":"ping"}'


async def test_pull_of_an_empty_store_gets_one_empty_chunk(connect):
    client = await connect()
    await client.pull("pull-1")
    assert await client.recv_text() == (
        '{"_tag":"WSMessage.PullRes","batch":[],"requestId":{"context":"pull","requestId":"pull-1"},"remaining":0}'
    )
    await assert_nothing_more(client)


async def test_push_is_acked_then_broadcast_to_the_pusher(connect):
    client = await connect()
    await client.push("push-1", events(1, 2))
    assert await client.recv_text() == '{"_tag":"WSMessage.PushAck","requestId":"push-1"}'
    broadcast = await client.recv()
    assert broadcast["requestId"] == {"context": "push", "requestId": "push-1"}
    assert broadcast["remaining"] == 0
    assert [item["eventEncoded"] for item in broadcast["batch"]] == events(1, 2)
    created = {item["metadata"]["value"]["createdAt"] for item in broadcast["batch"]}
    assert len(created) == 1
    assert all(item["metadata"]["_tag"] == "Some" for item in broadcast["batch"])


async def test_broadcast_reaches_sockets_that_pulled_and_not_other_stores(connect):
    pusher = await connect()
    listener = await connect()
    await listener.pull_all("pull-listener")
    other_store = await connect("another-store-entirely")
    await other_store.pull_all("pull-other")
    await pusher.push("push-A", events(1, 2))
    await pusher.recv()
    pusher_copy = await pusher.recv_text()
    assert await listener.recv_text() == pusher_copy
    await other_store.send({"_tag": "WSMessage.Ping", "requestId": "ping"})
    assert (await other_store.recv())["_tag"] == "WSMessage.Pong"


async def test_a_socket_gets_no_batch_before_it_says_where_its_client_stands(connect):
    """A reconnected 0.3.1 client sends no PullReq: a batch it got first would make it skip what it missed.

    The socket gets nothing until its first push, which says where the client
    stands (its parent): then every event after that parent, in order, once.
    """
    writer = await connect()
    await writer.push("missed", events(1, 3))
    await writer.recv()
    await writer.recv()
    returning = await connect()
    await writer.push("live", [event(4)])
    await writer.recv()
    await writer.recv()
    # The socket handles its frames and the store's messages in order: the Pong comes after anything sent for e4.
    await returning.send({"_tag": "WSMessage.Ping", "requestId": "ping"})
    assert (await returning.recv())["_tag"] == "WSMessage.Pong"

    await returning.push("stale", [event(2, client_id="returning")])
    healing = await returning.recv()
    assert healing["requestId"] == {"context": "push", "requestId": "stale"}
    assert seq_nums(healing) == [2, 3, 4]
    assert (await returning.recv())["message"] == "Invalid parent event number. Received e1 but expected e4"
    await writer.push("after", [event(5)])
    await writer.recv()
    assert seq_nums(await returning.recv()) == [5]


async def test_pull_returns_stored_events_with_their_push_time(connect):
    client = await connect()
    await client.push("push-1", events(1, 3))
    await client.recv()
    broadcast = await client.recv()
    [chunk] = await client.pull_all("pull-all")
    assert chunk["requestId"] == {"context": "pull", "requestId": "pull-all"}
    assert chunk["batch"] == broadcast["batch"]
    [after_one] = await client.pull_all("pull-c1", cursor=1)
    assert seq_nums(after_one) == [2, 3]
    [at_head] = await client.pull_all("pull-c3", cursor=3)
    assert at_head["batch"] == [] and at_head["remaining"] == 0
    [cursor_zero] = await client.pull_all("pull-c0", cursor=0)
    assert seq_nums(cursor_zero) == [1, 2, 3]


async def test_pull_of_250_events_comes_in_chunks_of_100_100_50(connect):
    client = await connect()
    await client.push("push-250", events(1, 250))
    await client.recv()
    await client.recv()
    chunks = await client.pull_all("pull-250")
    assert [len(c["batch"]) for c in chunks] == [100, 100, 50]
    assert [c["remaining"] for c in chunks] == [150, 50, 0]
    assert sum((seq_nums(c) for c in chunks), []) == list(range(1, 251))
    chunks = await client.pull_all("pull-from-120", cursor=120)
    assert [c["remaining"] for c in chunks] == [30, 0]
    assert sum((seq_nums(c) for c in chunks), []) == list(range(121, 251))


@override_settings(LIVESYNC={"PULL_CHUNK_SIZE": 7})
async def test_pull_chunk_size_is_a_setting(connect):
    client = await connect()
    await client.push("push", events(1, 10))
    await client.recv()
    await client.recv()
    chunks = await client.pull_all("pull")
    assert [len(c["batch"]) for c in chunks] == [7, 3]


async def test_push_on_a_wrong_parent_gets_the_reference_error_and_writes_nothing(connect, store_id):
    client = await connect()
    await client.push("push-1", events(1, 3))
    await client.recv()
    await client.recv()
    await client.push("push-gap", [event(5)])
    assert await client.recv() == {
        "_tag": "WSMessage.Error",
        "requestId": "push-gap",
        "message": "Invalid parent event number. Received e4 but expected e3",
    }
    await client.push("push-ok", [event(4)])
    assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    assert seq_nums(await client.recv()) == [4]
    assert await db.run(storage.head, store_id) == 4


@pytest.mark.parametrize(
    "batch, message",
    [
        (
            [event(1), {**event(3), "parentSeqNum": 1}],
            "Invalid batch: event 1 has seqNum e3 but its parent is e1",
        ),
        ([event(1), event(5)], "Invalid batch: event 1 has parent e4 but follows e1"),
        ([event(1), event(1)], "Invalid batch: event 1 has parent e0 but follows e1"),
    ],
)
async def test_broken_chains_are_rejected_whole(connect, store_id, batch, message):
    client = await connect()
    await client.push("push-broken", batch)
    assert await client.recv() == {"_tag": "WSMessage.Error", "requestId": "push-broken", "message": message}
    [chunk] = await client.pull_all("pull")
    assert chunk["batch"] == []
    assert await db.run(storage.head, store_id) == 0


async def test_empty_push_is_acked_at_once(connect):
    client = await connect()
    await client.push("push-empty", [])
    assert await client.recv_text() == '{"_tag":"WSMessage.PushAck","requestId":"push-empty"}'
    await assert_nothing_more(client)


async def test_event_without_args_is_echoed_without_and_pulled_with_null(connect):
    client = await connect()
    pushed = {key: value for key, value in event(1).items() if key != "args"}
    await client.push("push-noargs", [pushed])
    await client.recv()
    broadcast = await client.recv()
    assert broadcast["batch"][0]["eventEncoded"] == pushed
    [chunk] = await client.pull_all("pull-noargs")
    assert chunk["batch"][0]["eventEncoded"] == {**pushed, "args": None}
    assert '"name":"v1.TodoCreated","args":null,"seqNum":1' in str(await _pull_text(client))


async def _pull_text(client):
    await client.pull("pull-text")
    return await client.recv_text()


async def test_unicode_and_escapes_in_args_survive_push_and_pull(connect):
    client = await connect()
    args = {"id": "todo-2", "text": 'héllo ✓ 日本 "quoted" \\ back', "nested": [1, None, {"a": True}]}
    await client.push("push", [event(1, args=args)])
    await client.recv()
    assert (await client.recv())["batch"][0]["eventEncoded"]["args"] == args
    [chunk] = await client.pull_all("pull")
    assert chunk["batch"][0]["eventEncoded"]["args"] == args


async def test_concurrent_pushes_on_one_parent_one_wins(connect):
    a = await connect()
    b = await connect()
    await asyncio.gather(a.push("push-A", [event(1, client_id="A")]), b.push("push-B", [event(1, client_id="B")]))
    replies = {}
    for client in (a, b):
        # The winner: its PushAck and its own broadcast; the loser: the event it lacks, then the rejection.
        replies[client] = [await client.recv(), await client.recv()]
        await assert_nothing_more(client)
    acks = [c for c, frames in replies.items() if any(f["_tag"] == "WSMessage.PushAck" for f in frames)]
    errors = [f for frames in replies.values() for f in frames if f["_tag"] == "WSMessage.Error"]
    assert len(acks) == 1
    assert [e["message"] for e in errors] == ["Invalid parent event number. Received e0 but expected e1"]
    # Each socket received the winning event exactly once.
    for frames in replies.values():
        delivered = [n for f in frames if f["_tag"] == "WSMessage.PullRes" for n in seq_nums(f)]
        assert delivered == [1]


async def test_stale_push_first_receives_the_events_it_lacks(connect):
    """A client that reconnected without pulling learns what it missed from its rejected push."""
    writer = await connect()
    await writer.push("seed", events(1, 5))
    await writer.recv()
    await writer.recv()
    returning = await connect()
    await returning.push("stale", [event(3, client_id="returning")])
    healing = await returning.recv()
    assert healing["requestId"] == {"context": "push", "requestId": "stale"}
    assert seq_nums(healing) == [3, 4, 5]
    assert healing["remaining"] == 0
    assert (await returning.recv())["message"] == "Invalid parent event number. Received e2 but expected e5"
    await returning.push("rebased", [event(6, client_id="returning")])
    assert (await returning.recv())["_tag"] == "WSMessage.PushAck"
    assert seq_nums(await returning.recv()) == [6]
    await assert_nothing_more(returning)


async def test_a_socket_never_gets_an_event_twice_after_healing(connect):
    a = await connect()
    b = await connect()
    [chunk] = await b.pull_all("pull-b")
    assert chunk["batch"] == []
    await a.push("push-a", events(1, 2))
    assert (await a.recv())["_tag"] == "WSMessage.PushAck"
    # Whether b handles a's broadcast or its own stale push first, it gets e1 and e2 once.
    await b.push("push-b", [event(1, client_id="b")])
    frames = await frames_until_answer(b, "push-b")
    assert frames[-1]["message"] == "Invalid parent event number. Received e0 but expected e2"
    received = [n for frame in frames if frame["_tag"] == "WSMessage.PullRes" for n in seq_nums(frame)]
    assert received == [1, 2]
    await assert_nothing_more(b)


async def test_broadcasts_during_a_pull_are_neither_lost_nor_duplicated(connect):
    writer = await connect()
    await writer.push("seed", events(1, 300))
    await writer.recv()
    await writer.recv()
    reader = await connect()
    await reader.pull("pull")
    for n in range(301, 311):
        await writer.push(f"p{n}", [event(n)])
        assert (await writer.recv())["_tag"] == "WSMessage.PushAck"
        await writer.recv()
    received = []
    while len(received) < 310:
        received += seq_nums(await reader.recv())
    assert received == list(range(1, 311))
    await assert_nothing_more(reader)


async def test_gap_in_broadcasts_is_repaired_from_the_database(connect, store_id):
    """Another process commits without the broadcast reaching us: the next one triggers a repair."""
    reader = await connect()
    await reader.pull_all("pull")
    await db.run(storage.append, store_id, _batch(events(1, 2)), lambda e: None)
    writer = await connect()
    await writer.push("push-3", [event(3)])
    await writer.recv()
    repaired = await reader.recv()
    assert seq_nums(repaired) == [1, 2, 3]
    assert repaired["requestId"]["context"] == "push"
    await assert_nothing_more(reader)


def _batch(dicts):
    from syncapp.protocol import wire

    return [wire.Event(**{k: v for k, v in d.items() if k != "args"}) for d in dicts]


async def test_admin_info_with_wrong_and_right_secret(connect, store_id):
    client = await connect()
    await client.send({"_tag": "WSMessage.AdminInfoReq", "requestId": "info-wrong", "adminSecret": "nope"})
    assert await client.recv_text() == (
        '{"_tag":"WSMessage.Error","requestId":"info-wrong","message":"Invalid admin secret"}'
    )
    await client.send({"_tag": "WSMessage.AdminInfoReq", "requestId": "info-right", "adminSecret": "test-admin-secret"})
    info = await client.recv()
    assert info["_tag"] == "WSMessage.AdminInfoRes" and info["requestId"] == "info-right"
    assert info["info"]["durableObjectId"] == hashlib.sha256(store_id.encode()).hexdigest()
    assert len(info["info"]["durableObjectId"]) == 64


async def test_admin_reset_clears_events_and_closes_other_sockets(connect, store_id):
    admin = await connect()
    other = await connect()
    await other.pull_all("pull-other")
    await admin.push("seed", events(1, 3))
    await admin.recv()
    await admin.recv()
    await other.recv()
    await admin.send({"_tag": "WSMessage.AdminResetRoomReq", "requestId": "reset-wrong", "adminSecret": "x"})
    assert (await admin.recv())["message"] == "Invalid admin secret"
    assert await db.run(storage.head, store_id) == 3
    await admin.send(
        {"_tag": "WSMessage.AdminResetRoomReq", "requestId": "reset-right", "adminSecret": "test-admin-secret"}
    )
    assert await admin.recv() == {"_tag": "WSMessage.AdminResetRoomRes", "requestId": "reset-right"}
    closed = await other.recv_output()
    assert closed == {"type": "websocket.close", "code": 1012}
    other.connected = False
    [chunk] = await admin.pull_all("pull-after-reset")
    assert chunk["batch"] == []
    await admin.push("after-reset", [event(1, client_id="after-reset")])
    assert (await admin.recv())["_tag"] == "WSMessage.PushAck"
    assert seq_nums(await admin.recv()) == [1]


@pytest.mark.parametrize(
    "frame, request_id",
    [
        ("this is not json {", ""),
        ('{"_tag":"WSMessage.Bogus","requestId":"bogus-1"}', "bogus-1"),
        ('{"_tag":"WSMessage.PushAck","requestId":"x"}', "x"),
        ('{"_tag":"WSMessage.PullReq","requestId":"pull-bad","cursor":"1"}', "pull-bad"),
        ('{"_tag":"WSMessage.PullReq","requestId":"pull-neg","cursor":-1}', "pull-neg"),
        ('{"_tag":"WSMessage.PullReq","requestId":42}', ""),
        ('{"_tag":"WSMessage.PullReq"}', ""),
        ('{"_tag":"WSMessage.PushReq","requestId":"no-batch"}', "no-batch"),
        (
            '{"_tag":"WSMessage.PushReq","requestId":"push-bad-1","batch":[{"name":"x","seqNum":1,'
            '"parentSeqNum":0,"sessionId":"s"}]}',
            "push-bad-1",
        ),
        (
            '{"_tag":"WSMessage.PushReq","requestId":"push-bad-2","batch":[{"name":"x","seqNum":"1",'
            '"parentSeqNum":0,"clientId":"c","sessionId":"s"}]}',
            "push-bad-2",
        ),
        (
            '{"_tag":"WSMessage.PushReq","requestId":"push-float","batch":[{"name":"x","seqNum":1.5,'
            '"parentSeqNum":0,"clientId":"c","sessionId":"s"}]}',
            "push-float",
        ),
        ("[1,2,3]", ""),
        ('"just a string"', ""),
    ],
)
async def test_malformed_frames_get_an_error_and_change_nothing(connect, store_id, frame, request_id):
    client = await connect()
    await client.send(frame)
    error = await client.recv()
    assert error["_tag"] == "WSMessage.Error"
    assert error["requestId"] == request_id
    assert error["message"].startswith("Invalid message: ")
    await client.send('{"_tag":"WSMessage.Ping","requestId":"ping"}')
    assert (await client.recv())["_tag"] == "WSMessage.Pong"
    assert await db.run(storage.get_store, store_id) is None


async def test_binary_frames_are_refused_with_an_error(connect):
    client = await connect()
    await client.communicator.send_to(bytes_data=b'{"_tag":"WSMessage.PullReq","requestId":"pull-bin"}')
    assert await client.recv() == {
        "_tag": "WSMessage.Error",
        "requestId": "",
        "message": "Binary frames are not supported",
    }


@override_settings(LIVESYNC={"MAX_MESSAGE_BYTES": 10_000})
async def test_oversized_frames_are_refused_and_nothing_is_stored(connect, store_id):
    client = await connect()
    await client.push("huge", [event(1, args={"blob": "x" * 20_000})])
    error = await client.recv()
    assert error == {
        "_tag": "WSMessage.Error",
        "requestId": "huge",
        "message": "Message too large: more than 10000 bytes",
    }
    assert await db.run(storage.head, store_id) == 0


async def test_sequence_numbers_beyond_javascript_safe_integers_are_refused(connect):
    client = await connect()
    await client.push("too-big", [{**event(1), "seqNum": 2**53, "parentSeqNum": 2**53 - 1}])
    assert (await client.recv())["message"].startswith("Invalid message: ")


async def test_prefixed_path_is_a_sync_endpoint(connect):
    client = await connect(path="/some/prefix/websocket")
    await client.send('{"_tag":"WSMessage.Ping","requestId":"ping"}')
    assert (await client.recv())["_tag"] == "WSMessage.Pong"


async def test_hostile_store_ids_get_their_own_tables(connect, store_id):
    names = [f"{store_id}{suffix}" for suffix in ("a-b", "a_b", "a.b", "'; DROP TABLE syncapp_store; --", "日本")]
    names.append(store_id + "x" * (200 - len(store_id)))
    for index, name in enumerate(names):
        client = await connect(name)
        await client.push(f"push-{index}", [event(1, client_id=str(index))])
        assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    for index, name in enumerate(names):
        client = await connect(name)
        [chunk] = await client.pull_all("pull")
        assert [item["eventEncoded"]["clientId"] for item in chunk["batch"]] == [str(index)]
    tables = {(await db.run(storage.get_store, name)).table_name for name in names}
    assert len(tables) == len(names)


async def test_hooks_see_messages_and_can_reject(connect, store_id, settings):
    from tests.support import hooks

    hooks.seen.clear()
    settings.LIVESYNC = {
        "ON_PUSH": "tests.support.hooks.reject_forbidden_push",
        "ON_PUSH_RES": "tests.support.hooks.record",
        "ON_PULL": "tests.support.hooks.record",
        "ON_PULL_RES": "tests.support.hooks.record_async",
    }
    client = await connect()
    await client.push("forbidden", [event(1, name="v1.Forbidden")])
    assert await client.recv() == {"_tag": "WSMessage.Error", "requestId": "forbidden", "message": "not allowed"}
    await client.push("allowed", [event(1)])
    assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    await client.recv()
    await client.pull_all("pull")
    tags = [message["_tag"] for message in hooks.seen]
    assert tags == [
        "WSMessage.Error",
        "WSMessage.PushAck",
        "WSMessage.PullRes",
        "WSMessage.PullReq",
        "WSMessage.PullRes",
    ]
    assert await db.run(storage.head, store_id) == 1


async def test_a_retried_push_is_acknowledged_and_only_its_new_events_are_stored(connect, store_id):
    """A client that lost an acknowledgement (dropped socket, reloaded page) re-sends stored events with new ones."""
    first = await connect()
    await first.push("p1", events(1, 1))
    assert (await first.recv())["_tag"] == "WSMessage.PushAck"
    await first.recv()
    observer = await connect()
    await observer.pull_all("pull")
    retrying = await connect()
    await retrying.push("p1-again", events(1, 2))
    assert (await retrying.recv())["_tag"] == "WSMessage.PushAck"
    assert seq_nums(await retrying.recv()) == [1, 2]
    assert seq_nums(await observer.recv()) == [2]
    await assert_nothing_more(observer)
    assert await db.run(storage.head, store_id) == 2


async def test_a_pure_retry_is_acknowledged_and_echoed_without_writing(connect, store_id):
    writer = await connect()
    await writer.push("p", events(1, 2))
    await writer.recv()
    await writer.recv()
    retrying = await connect()
    await retrying.push("again", events(1, 2))
    assert (await retrying.recv())["_tag"] == "WSMessage.PushAck"
    assert seq_nums(await retrying.recv()) == [1, 2]
    await assert_nothing_more(writer)
    await assert_nothing_more(retrying)
    assert await db.run(storage.head, store_id) == 2


async def test_a_retry_that_differs_in_any_field_is_a_parent_mismatch(connect, store_id):
    writer = await connect()
    await writer.push("p", events(1, 1))
    await writer.recv()
    await writer.recv()
    other = await connect()
    await other.push("other", [event(1, client_id="someone-else"), event(2)])
    frames = [await other.recv(), await other.recv()]
    assert frames[-1] == {
        "_tag": "WSMessage.Error",
        "requestId": "other",
        "message": "Invalid parent event number. Received e0 but expected e1",
    }
    await assert_nothing_more(other)
    assert await db.run(storage.head, store_id) == 1


async def test_pushes_to_many_stores_at_once_are_each_acknowledged_echoed_and_stored(connect, store_id):
    """On SQLite these commit in groups: every push still gets its own answer, and a stale one changes nothing."""
    clients = [await connect(f"{store_id}.{index}") for index in range(12)]
    stale = await connect(f"{store_id}.0")

    async def push_five(client, index):
        for n in range(1, 6):
            await client.push(f"s{index}-{n}", [event(n, client_id=f"c{index}")])
            assert (await client.recv())["_tag"] == "WSMessage.PushAck"
            assert seq_nums(await client.recv()) == [n]

    await asyncio.gather(*(push_five(client, index) for index, client in enumerate(clients)))
    await stale.push("stale", [event(5, client_id="stale")])
    frames = await frames_until_answer(stale, "stale")
    assert frames[-1]["message"] == "Invalid parent event number. Received e4 but expected e5"
    # Whatever reached it before its push, it has e5 (after its parent e4) once, in order.
    received = [n for frame in frames if frame["_tag"] == "WSMessage.PullRes" for n in seq_nums(frame)]
    assert received and received == list(range(received[0], 6)), received
    await assert_nothing_more(stale)
    for index in range(12):
        page = await db.run(storage.read_page, f"{store_id}.{index}", 0, 10)
        assert [(e.seq_num, e.client_id) for e in page.events] == [(n, f"c{index}") for n in range(1, 6)]


async def test_without_a_channel_layer_a_socket_is_refused_with_the_reason_in_the_log(settings, caplog, store_id):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {}
    channel_layers.backends.clear()
    client = Client(store_id)
    with caplog.at_level("ERROR", logger="syncapp"):
        connected, _ = await client.connect()
    assert not connected
    assert any(
        "CHANNEL_LAYERS has no 'default' layer" in record.getMessage() + str(record.exc_info)
        for record in caplog.records
    )
