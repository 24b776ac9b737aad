"""The subscriber invariant under hostile load: the contiguous log, or a close code to reconnect from.

While clients push huge events, huge batches, NUL, deep JSON and floods of pulls to one store, and others
push to hostile storeIds, ordinary clients keep pushing to it. The plain readers of the store (0.3 sockets
and 0.4 live pulls that only read) must stay open and end up with the store's whole log as one contiguous
run. The clients that push the load may instead have been closed by the server with a code their client
reconnects from, after receiving a contiguous prefix. Never a gap.
"""

import asyncio
import hashlib
import json
import time

import pytest

from tests.support.stalled import StalledSocket
from tests.support.v03_socket import SyncSocket, store_url
from tests.support.v04_socket import RpcSocket, events, open_ws

pytestmark = pytest.mark.hostile

SECONDS = 6
# Close codes the server uses; a LiveStore client reconnects after each (after any close, in fact).
RECONNECT_CODES = {1011, 1012, 1013}
HOSTILE_STORE_IDS = [
    "a" * 255,
    "../../etc/passwd",
    "Robert'); DROP TABLE syncapp_store;--",
    "\u00e9t\u00e9 \u2603 \U0001f600",
    "eventlog_7_x",
    "x" + hashlib.sha256(b"x").hexdigest(),
]


async def _rebasing_pusher(socket, deadline, size):
    """Push ``size`` events at a time until the deadline, rebasing onto what others pushed."""
    while time.monotonic() < deadline and not socket.closed.is_set():
        head = socket.head
        outcome = await socket.push(events(head + 1, head + size, client_id=socket.name), timeout=30)
        if not outcome.acked:
            await socket.wait_for_cursor(head + 1, 5)
        # Paced, so that the 10,000-event batch (a frame that takes a while to send) is not always stale.
        await asyncio.sleep(0.1)


async def _hostile_frames(server, store_id, deadline):
    ws = await open_ws(store_url(server.url, store_id))
    deep = "[" * 2000 + "]" * 2000
    bad = json.dumps({"_tag": "WSMessage.PushReq", "requestId": "nul", "batch": events(1, 1, client_id="\u0000")})
    while time.monotonic() < deadline:
        await ws.send('{"_tag":"WSMessage.Ping","requestId":"ping","x":' + deep + "}")
        await ws.send(bad)
        await ws.recv()
        await ws.recv()
    await ws.close()


async def _hostile_stores(server, deadline):
    while time.monotonic() < deadline:
        for hostile in HOSTILE_STORE_IDS:
            socket = await SyncSocket("hostile-store", store_url(server.url, hostile)).open()
            await socket.push(events(socket.head + 1, socket.head + 1))
            await socket.close()


def _ends_well(seq_nums, violations, close_code, head, name):
    assert violations == [], f"{name}: {violations[:3]}"
    if close_code is None:
        assert seq_nums == list(range(1, head + 1)), f"{name} is open but has e1..e{seq_nums[-1:]} of e{head}"
    else:
        assert close_code in RECONNECT_CODES, f"{name} was closed with {close_code}"
        assert seq_nums == list(range(1, len(seq_nums) + 1)), f"{name}: not a prefix"


async def test_every_subscriber_sees_the_log_contiguously_or_is_closed(server, store_id):
    subscribers = [await SyncSocket(f"reader-{n}", store_url(server.url, store_id)).open() for n in range(3)]
    rpcs = [await RpcSocket(server.url, store_id).open() for _ in range(2)]
    pulls = [await rpc.live_pull() for rpc in rpcs]
    pushers = [await SyncSocket(f"pusher-{n}", store_url(server.url, store_id)).open() for n in range(2)]
    huge = await SyncSocket("huge-batch", store_url(server.url, store_id)).open()
    large = await SyncSocket("large-events", store_url(server.url, store_id)).open()
    stalled = await asyncio.to_thread(StalledSocket, server.port, f"/websocket?storeId={store_id}")
    for n in range(20):
        stalled.send_text(json.dumps({"_tag": "WSMessage.PullReq", "requestId": f"flood-{n}"}))

    deadline = time.monotonic() + SECONDS

    async def large_events():
        while time.monotonic() < deadline:
            head = large.head
            batch = events(head + 1, head + 1, client_id="large", args={"blob": "y" * 900_000})
            if not (await large.push(batch, timeout=30)).acked:
                await large.wait_for_cursor(head + 1, 5)
            await asyncio.sleep(0.2)

    async def huge_batches():
        while time.monotonic() < deadline:
            head = huge.head
            batch = [
                {"name": "e", "args": {}, "seqNum": n, "parentSeqNum": n - 1, "clientId": "c", "sessionId": "s"}
                for n in range(head + 1, head + 10_001)
            ]
            if not (await huge.push(batch, timeout=30)).acked:
                await huge.wait_for_cursor(head + 1, 5)

    await asyncio.gather(
        *(_rebasing_pusher(pusher, deadline, 3) for pusher in pushers),
        large_events(),
        huge_batches(),
        _hostile_frames(server, store_id, deadline),
        _hostile_stores(server, deadline),
    )
    stalled.close()
    final = await SyncSocket("final", store_url(server.url, store_id)).open(timeout=30)
    head = final.cursor
    assert head > 10_000, "the hostile load pushed less than expected"
    # The plain readers only read, as fast as the events come: whatever the others do, they stay open and
    # reach the head (a close code would be a reader paying for someone else's load).
    for reader in subscribers:
        await reader.wait_for_cursor(head, 30)
        _stays_open_at_the_head(reader.seq_nums(), reader.violations, reader.close_code, head, reader.name)
    for rpc, pull in zip(rpcs, pulls, strict=True):
        try:
            await rpc.wait_for_seq(pull, head, 30)
        except (ConnectionError, TimeoutError):
            pass
        _stays_open_at_the_head(rpc.live[pull], rpc.violations, rpc.close_code, head, f"0.4 live pull {pull}")
    # The clients that push hostile loads themselves may be closed with a code to reconnect from, never with a gap.
    for subscriber in [*pushers, huge, large]:
        await subscriber.wait_for_cursor(head, 30)
        _ends_well(subscriber.seq_nums(), subscriber.violations, subscriber.close_code, head, subscriber.name)
    for client in [*subscribers, *rpcs, *pushers, huge, large, final]:
        await client.close()


def _stays_open_at_the_head(seq_nums, violations, close_code, head, name):
    assert violations == [], f"{name}: {violations[:3]}"
    assert close_code is None, f"{name}, a plain reader, was closed with {close_code}"
    assert seq_nums == list(range(1, head + 1)), f"{name} is open but has e1..e{seq_nums[-1:]} of e{head}"
