"""Graceful shutdown: SIGTERM to a daphne process whose sockets are pushing."""

import asyncio
import json
import time
from urllib.parse import quote

import pytest
import websockets

from syncapp.server.websocket import CLOSE_SERVICE_RESTART
from tests.support.cluster import database_head, stored_events
from tests.support.v03_socket import batch_key, check_whole_batches, close_all, open_sockets, push_batches

pytestmark = pytest.mark.faults

BATCH_SIZE = 5


@pytest.mark.parametrize("last_handshake", ["long before", "just before"])
async def test_sigterm_closes_sockets_with_1012_and_loses_no_acknowledged_push(
    nodes, store_id, fault_database, observe, last_handshake
):
    """SIGTERM while three sockets push and one idles: every socket gets 1012, no acknowledged push is lost.

    "just before": a client completes its handshake a moment before the SIGTERM, as some always do on a busy
    server (daphne keeps the upgraded HTTP request in its connection table for up to a second).
    """
    victim, other = nodes(2)
    pushers = await open_sockets([(f"victim-pusher-{n}", victim.url(store_id)) for n in range(3)])
    if last_handshake == "long before":
        (idle,) = await open_sockets([("victim-idle", victim.url(store_id))])
    last_open = time.monotonic()
    (reader,) = await open_sockets([("other-reader", other.url(store_id))])
    pushing = [asyncio.ensure_future(push_batches(sock, sock.name, 10_000, BATCH_SIZE)) for sock in pushers]
    deadline = time.monotonic() + 20
    while sum(len(sock.frames_of("WSMessage.PushAck")) for sock in pushers) < 20:
        assert time.monotonic() < deadline, "the pushers were never acknowledged"
        await asyncio.sleep(0.005)
    if last_handshake == "long before":
        await asyncio.sleep(max(0.0, last_open + 2.2 - time.monotonic()))
    else:
        (idle,) = await open_sockets([("victim-idle", victim.url(store_id))])

    terminated_at = time.monotonic()
    stopping = asyncio.ensure_future(asyncio.to_thread(victim.server.stop, 15))
    records = await asyncio.wait_for(asyncio.gather(*pushing), 20)
    await asyncio.wait_for(idle.closed.wait(), 15)
    await stopping
    exited_after = time.monotonic() - terminated_at
    victims = [*pushers, idle]
    closes = {sock.name: (sock.close_code, round(sock.closed_at - terminated_at, 3)) for sock in victims}

    # The clients reconnect to the other process and go on.
    (reconnected,) = await open_sockets([("reconnected", other.url(store_id))])
    after = await push_batches(reconnected, "reconnected", 5, BATCH_SIZE)
    head = database_head(fault_database, store_id)
    for sock in (reader, reconnected):
        assert await sock.wait_for_cursor(head, 6), f"{sock.name} stopped at e{sock.cursor} of e{head}"
    await close_all([reader, reconnected])

    stored, _ = stored_events(fault_database, store_id)
    ranges = {}
    for event in stored:
        first, last = ranges.get(batch_key(event), (event["seqNum"], event["seqNum"]))
        ranges[batch_key(event)] = (min(first, event["seqNum"]), max(last, event["seqNum"]))
    acked = {key: (first, last) for record in (*records, after) for key, (first, last, _) in record.acked.items()}
    in_flight = {key for record in records for key in record.unanswered}

    observe("close code / s after SIGTERM per socket", closes)
    observe("daphne exited after s", exited_after)
    observe("daphne exit status", victim.server.returncode)
    observe("pushes in flight at SIGTERM (unanswered)", len(in_flight))
    observe("  of which stored", len(in_flight & set(ranges)))
    observe("acknowledged batches", len(acked))

    assert check_whole_batches(stored) == []
    assert {key: ranges.get(key) for key in acked} == acked, "an acknowledged batch was lost"
    assert set(ranges) <= set(acked) | in_flight
    assert {code for code, _ in closes.values()} == {CLOSE_SERVICE_RESTART}, closes
    for sock in (*victims, reader, reconnected):
        assert sock.violations == [], sock.violations
    assert [(e["seqNum"], e["args"]) for e in reader.history] == [(e["seqNum"], e["args"]) for e in stored]


async def test_sigterm_closes_0_4_sockets_with_1012_and_loses_no_acknowledged_push(nodes, store_id, fault_database):
    """The same for ``makeWsSync`` sockets: a pusher and a live pull on the stopping process."""
    (victim,) = nodes(1)
    url = f"{victim.server.url}/?storeId={quote(store_id, safe='')}&transport=ws"
    pusher = await websockets.connect(url)
    reader = await websockets.connect(url)
    pull = {"storeId": store_id, "live": True, "cursor": {"_tag": "None"}}
    await reader.send(json.dumps({"_tag": "Request", "id": "live", "tag": "SyncWsRpc.Pull", "payload": pull}))
    await reader.recv()

    acknowledged, head = [], 0

    async def push_until_closed():
        nonlocal head
        number = 0
        while True:
            batch = [
                {
                    "name": "v1.X",
                    "args": {"n": n},
                    "seqNum": n,
                    "parentSeqNum": n - 1,
                    "clientId": "c",
                    "sessionId": "s",
                }
                for n in range(head + 1, head + BATCH_SIZE + 1)
            ]
            payload = {"storeId": store_id, "batch": batch, "backendId": {"_tag": "None"}}
            try:
                await pusher.send(
                    json.dumps({"_tag": "Request", "id": str(number), "tag": "SyncWsRpc.Push", "payload": payload})
                )
                answer = json.loads(await pusher.recv())
            except websockets.ConnectionClosed:
                return
            assert answer["exit"]["_tag"] == "Success", answer
            head += BATCH_SIZE
            acknowledged.append(head)
            number += 1

    pushing = asyncio.ensure_future(push_until_closed())
    while len(acknowledged) < 10:
        await asyncio.sleep(0.005)
    await asyncio.to_thread(victim.server.stop, 15)
    await asyncio.wait_for(pushing, 15)
    with pytest.raises(websockets.ConnectionClosed) as reader_closed:
        while True:
            await asyncio.wait_for(reader.recv(), 15)

    assert pusher.close_code == CLOSE_SERVICE_RESTART
    assert reader_closed.value.rcvd.code == CLOSE_SERVICE_RESTART
    stored_head = database_head(fault_database, store_id)
    assert stored_head >= acknowledged[-1], "an acknowledged push was lost"
    stored, _ = stored_events(fault_database, store_id)
    assert [event["seqNum"] for event in stored] == list(range(1, stored_head + 1))
