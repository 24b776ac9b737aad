"""Frames no client should send, answered with a clear error that changes nothing (issue cases 1, 6, 8).

Each test runs against a real daphne process on SQLite and on PostgreSQL + Redis. Deep JSON is refused at
livesync's nesting limit (``wire.MAX_ARGS_DEPTH``), read off the text before any decoder recurses, so the
answer is the same on every Python (issue 35); NUL's fate depends on the database's text type.
"""

import json
import urllib.request

import pytest

from syncapp.protocol import wire
from tests.support.v03_socket import SyncSocket, store_url
from tests.support.v04_client import push_payload, query, request
from tests.support.v04_socket import RpcSocket, event, events, open_ws

pytestmark = pytest.mark.hostile

# The frame: 9,000 levels, which 3.13's json and msgspec decode and 3.11's do not.
DEPTH = 9_000
DEEP = "[" * DEPTH + "]" * DEPTH
TOO_DEEP = f"JSON is nested too deeply: {wire.NESTING_LIMIT}"


async def recv_json(ws, timeout=5.0):
    import asyncio

    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_deep_json_is_an_invalid_message_and_the_0_3_socket_stays_open(server, store_id):
    ws = await open_ws(store_url(server.url, store_id))
    await ws.send('{"_tag":"WSMessage.Ping","requestId":"ping","x":' + DEEP + "}")
    assert await recv_json(ws) == {
        "_tag": "WSMessage.Error",
        "requestId": "ping",
        "message": f"Invalid message: {TOO_DEEP}",
    }
    deep_args = json.dumps(
        {"_tag": "WSMessage.PushReq", "requestId": "deep", "batch": [event(1)]}, separators=(",", ":")
    )
    await ws.send(deep_args.replace('"args":{}', '"args":' + DEEP))
    # Answered as that push: the client's push fails instead of waiting for its PushAck.
    assert await recv_json(ws) == {
        "_tag": "WSMessage.Error",
        "requestId": "deep",
        "message": f"Invalid message: {TOO_DEEP}",
    }
    await ws.send('{"_tag":"WSMessage.Ping","requestId":"ping"}')
    assert await recv_json(ws) == {"_tag": "WSMessage.Pong", "requestId": "ping"}
    await ws.send('{"_tag":"WSMessage.PullReq","requestId":"p"}')
    pulled = await recv_json(ws)
    assert pulled["batch"] == [] and pulled["remaining"] == 0, "the deep push changed the store"
    await ws.close()


async def test_deep_json_over_0_4_ws_is_a_defect_and_the_socket_stays_open(server, store_id):
    ws = await open_ws(f"{server.url}/?{query(store_id)}")
    await ws.send('{"_tag":"Ping","x":' + DEEP + "}")
    assert await recv_json(ws) == {"_tag": "Defect", "defect": {"name": "SyntaxError", "message": TOO_DEEP}}
    push = json.dumps(request("1", "SyncWsRpc.Push", push_payload(store_id, [event(1)])), separators=(",", ":"))
    await ws.send(push.replace('"args":{}', '"args":' + DEEP))
    # A request: that request fails (Die), not every request of the socket (a Defect).
    answer = await recv_json(ws)
    assert answer["_tag"] == "Exit" and answer["requestId"] == "1", answer
    assert answer["exit"]["cause"]["_tag"] == "Die" and answer["exit"]["cause"]["defect"].endswith(f"└─ {TOO_DEEP}")
    await ws.send('{"_tag":"Ping"}')
    assert await recv_json(ws) == {"_tag": "Pong"}
    await ws.close()


def test_deep_json_over_0_4_http_is_answered_not_a_500(server, store_id):
    def post(body):
        url = f"{server.http_url}/?{query(store_id, transport='http')}"
        with urllib.request.urlopen(
            urllib.request.Request(url, data=body.encode(), method="POST"), timeout=10
        ) as response:
            assert response.status == 200
            return json.loads(response.read())

    # Deep before the request's id: nothing to answer but the connection.
    assert post('{"x":' + DEEP + ',"_tag":"Request","id":"1","tag":"SyncHttpRpc.Ping","payload":{"storeId":"x"}}') == [
        {"_tag": "Defect", "defect": {"name": "SyntaxError", "message": TOO_DEEP}}
    ]
    push = json.dumps(request("2", "SyncHttpRpc.Push", push_payload(store_id, [event(1)])), separators=(",", ":"))
    [answer] = post(push.replace('"args":{}', '"args":' + DEEP))
    assert answer["requestId"] == "2" and answer["exit"]["cause"]["_tag"] == "Die"
    assert answer["exit"]["cause"]["defect"].endswith(f"└─ {TOO_DEEP}")


@pytest.mark.parametrize("field", ["clientId", "name", "sessionId"])
async def test_nul_in_a_stored_text_field_is_refused_on_both_generations(server, store_id, field):
    bad = event(1)
    bad[field] = "a\u0000b"
    socket = await SyncSocket("nul", store_url(server.url, store_id)).open()
    outcome = await socket.push([bad])
    assert not outcome.acked
    assert outcome.message == f"Invalid message: `$.batch[0].{field}` contains a NUL character"
    rpc = await RpcSocket(server.url, store_id).open()
    answer = await rpc.push([bad])
    cause = answer["exit"]["cause"]
    assert cause["_tag"] == "Die" and f"`$.batch[0].{field}` contains a NUL character" in cause["defect"]
    # Nothing was stored, and the store takes a good push at e1.
    good = await socket.push([event(1)])
    assert good.acked, good.message
    await socket.close()
    await rpc.close()


async def test_nul_in_backend_id_is_refused(server, store_id):
    rpc = await RpcSocket(server.url, store_id).open()
    answer = await rpc.push([event(1)], backend_id="a\u0000b")
    assert answer["exit"]["cause"]["_tag"] == "Die"
    assert "`$.backendId` contains a NUL character" in answer["exit"]["cause"]["defect"]
    await rpc.close()


async def test_nul_inside_args_round_trips_on_both_generations(server, store_id):
    args = {"text": "a\u0000b", "nested": ["\u0000"]}
    socket = await SyncSocket("writer", store_url(server.url, store_id)).open()
    outcome = await socket.push(events(1, 1, args=args))
    assert outcome.acked, outcome.message
    reader = await SyncSocket("reader", store_url(server.url, store_id)).open()
    assert reader.history[0]["args"] == args
    rpc = await RpcSocket(server.url, store_id).open()
    pull = await rpc.live_pull()
    await rpc.wait_for_seq(pull, 1)
    (chunk,) = rpc.chunks[pull]
    assert chunk["values"][0]["batch"][0]["eventEncoded"]["args"] == args
    for client in (socket, reader, rpc):
        await client.close()
