"""A seeded fuzzer: a few thousand malformed and hostile frames of both generations against a real daphne.

Frames are mutations of valid ones: values swapped for hostile ones (NUL, huge numbers, deep nesting, long
strings), keys dropped or added, tags changed, text cut short, binary frames. None of them can be a valid
write: every push is built on a parent above the head, admin frames are off on this server (no admin secret:
three wrong secrets close a socket by design, see tests/security/test_origins.py), and no mutation produces the
head's seqNum. Whatever arrives, no socket is closed by the server, no traceback is logged (see conftest), and the
store's log is what it was.
"""

import asyncio
import copy
import json
import random
import urllib.error
import urllib.request

import pytest

from tests.support.v03_socket import SyncSocket, store_url
from tests.support.v04_client import pull_payload, push_payload, query, request
from tests.support.v04_socket import RpcSocket, events, open_ws

pytestmark = pytest.mark.hostile

SEED = 20261203
FRAMES_PER_GENERATION = 1500
HTTP_BODIES = 200
HEAD = 5
# Frames between two pings (a client that floods without waiting is closed by design: SOCKET_QUEUE_SIZE).
BURST = 50

HOSTILE_VALUES = [
    None,
    True,
    -1,
    1.5,
    2**53,
    2**64,
    "",
    "\u0000",
    "a\u0000b",
    "x" * 5000,
    "\ud83d\ude00" * 50,
    "e5",
    [],
    {},
    {"_tag": "Some"},
    {"_tag": "None", "value": 1},
    "[" * 300,
]
TAGS_03 = [
    "WSMessage.PushReq",
    "WSMessage.PullReq",
    "WSMessage.Ping",
    "WSMessage.PushAck",
    "WSMessage.PullRes",
    "WSMessage.AdminResetRoomReq",
    "Unknown",
    "",
]
TAGS_04 = ["Request", "Ack", "Interrupt", "Ping", "Eof", "Chunk", "Exit", "Pong", ""]
RPC_TAGS = ["SyncWsRpc.Push", "SyncWsRpc.Pull", "SyncHttpRpc.Push", "SyncHttpRpc.Ping", "Nope"]


def deep(depth):
    return json.loads("[" * depth + "]" * depth) if depth < 500 else None


def fuzz_events(store_head):
    # clientId "fuzz" never matches a stored event: no push can pass as a retry of one.
    return events(store_head + 3, store_head + 4, client_id="fuzz")


@pytest.fixture(scope="module")
def server(deployment):
    """One daphne process of the module's backend, with admin frames off."""
    return deployment.start({"LIVESYNC_ADMIN_SECRET": ""})


def base_frames_03(store_id):
    return [
        {"_tag": "WSMessage.PushReq", "requestId": "push", "batch": fuzz_events(HEAD)},
        {"_tag": "WSMessage.PullReq", "requestId": "pull", "cursor": 2},
        {"_tag": "WSMessage.Ping", "requestId": "ping"},
        {"_tag": "WSMessage.AdminResetRoomReq", "requestId": "admin", "adminSecret": "wrong"},
        {"_tag": "WSMessage.AdminInfoReq", "requestId": "info", "adminSecret": "wrong"},
    ]


def base_frames_04(store_id):
    return [
        request("1", "SyncWsRpc.Push", push_payload(store_id, fuzz_events(HEAD))),
        request("2", "SyncWsRpc.Pull", pull_payload(store_id, False)),
        request("3", "SyncWsRpc.Pull", pull_payload(store_id, True, after=1, backend_id="unknown")),
        {"_tag": "Ack", "requestId": "2"},
        {"_tag": "Interrupt", "requestId": "3"},
        {"_tag": "Ping"},
    ]


def _nodes(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nodes(item, (*path, index))


def _replace(value, path, new):
    if not path:
        return new
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return value


def mutate(rng, frame, tags):
    """One hostile variant of ``frame``: text or bytes."""
    frame = copy.deepcopy(frame)
    kind = rng.randrange(10)
    if kind <= 3:
        path = rng.choice(list(_nodes(frame))[1:] or [()])
        frame = _replace(frame, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))
    elif kind == 4:
        path = rng.choice([p for p in _nodes(frame) if p] or [()])
        parent = frame
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, list) and parent:
            parent.pop()
    elif kind == 5:
        frame[rng.choice(["_tag", "x", "requestId", "payload", "batch"])] = rng.choice(tags + HOSTILE_VALUES[:8])
    elif kind == 6:
        text = json.dumps(frame, separators=(",", ":"))
        return text[: rng.randrange(len(text))]
    elif kind == 7:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    elif kind == 8:
        depth = rng.choice([100, 999, 1000, 5000])
        text = json.dumps(frame, separators=(",", ":"))
        cut = rng.randrange(1, len(text))
        return text[:cut] + "[" * depth + "]" * depth + text[cut:]
    else:
        if "payload" in frame and isinstance(frame["payload"], dict):
            frame["tag"] = rng.choice(RPC_TAGS)
        frame["_tag"] = rng.choice(tags)
    return json.dumps(frame, separators=(",", ":"))


async def _still_open(ws, ping, pong_tag):
    """Ping and read until the Pong: the socket is open and still answering."""
    await ws.send(ping)
    while json.loads(await asyncio.wait_for(ws.recv(), 10)).get("_tag") != pong_tag:
        pass


async def _still_open_03(ws):
    await _still_open(ws, '{"_tag":"WSMessage.Ping","requestId":"ping"}', "WSMessage.Pong")


async def _still_open_04(ws):
    await _still_open(ws, '{"_tag":"Ping"}', "Pong")


async def _fuzz(ws, frames, still_open):
    for index, frame in enumerate(frames):
        await ws.send(frame)
        if index % BURST == BURST - 1:
            await still_open(ws)
    await still_open(ws)


def _post(url, body):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def test_fuzzed_frames_close_no_socket_and_change_no_log(server, store_id):
    rng = random.Random(SEED)
    writer = await SyncSocket("writer", store_url(server.url, store_id)).open()
    assert (await writer.push(events(1, HEAD))).acked
    # The pusher's own events come back after its PushAck, not necessarily in the same read.
    assert await writer.wait_for_cursor(HEAD, timeout=10)
    before = writer.seq_nums()

    frames_03 = [mutate(rng, rng.choice(base_frames_03(store_id)), TAGS_03) for _ in range(FRAMES_PER_GENERATION)]
    frames_04 = [mutate(rng, rng.choice(base_frames_04(store_id)), TAGS_04) for _ in range(FRAMES_PER_GENERATION)]
    bodies = [mutate(rng, rng.choice(base_frames_04(store_id)), TAGS_04) for _ in range(HTTP_BODIES)]
    ws_03 = await open_ws(store_url(server.url, store_id))
    ws_04 = await open_ws(f"{server.url}/?{query(store_id)}")
    await asyncio.gather(_fuzz(ws_03, frames_03, _still_open_03), _fuzz(ws_04, frames_04, _still_open_04))

    http_url = f"{server.http_url}/?{query(store_id, transport='http')}"
    for body in bodies:
        status, answer = await asyncio.to_thread(_post, http_url, body if isinstance(body, bytes) else body.encode())
        assert status == 200, (status, answer[:200], body[:200])
        assert isinstance(json.loads(answer), list)

    assert ws_03.close_code is None and ws_04.close_code is None
    reader = await SyncSocket("reader", store_url(server.url, store_id)).open()
    assert reader.seq_nums() == before == list(range(1, HEAD + 1))
    assert [event["clientId"] for event in reader.history] == [event["clientId"] for event in writer.history]
    rpc = await RpcSocket(server.url, store_id).open()
    pull = await rpc.live_pull()
    await rpc.wait_for_seq(pull, HEAD)
    await asyncio.sleep(0.3)
    assert rpc.live[pull] == before
    for client in (writer, reader, rpc):
        await client.close()
    await ws_03.close()
    await ws_04.close()
