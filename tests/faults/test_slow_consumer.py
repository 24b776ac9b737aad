"""Slow consumers: a socket that stops reading, and a socket whose store messages pile up faster than it
handles them."""

import asyncio
import json
import statistics
import time

import pytest

from syncapp.websocket import CLOSE_TOO_SLOW
from tests.support.stalled import StalledSocket
from tests.support.v03_socket import check_whole_batches, close_all, open_sockets, push_batches

pytestmark = pytest.mark.faults

PING_ARGS = ("--ping-interval", "1", "--ping-timeout", "3")
EVENTS = 2000
BATCH = 10
PADDING = "x" * 3000  # makes the never-read backlog (~6 MB) outgrow the kernel socket buffers


async def test_stalled_socket_does_not_slow_its_store_and_is_dropped_by_the_ping_timeout(nodes, store_id, observe):
    (node,) = nodes(1, daphne_args=PING_ARGS)
    readers = await open_sockets([(f"reader-{n}", node.url(store_id)) for n in range(3)])
    (pusher,) = await open_sockets([("pusher", node.url(store_id))])
    stalled = await asyncio.to_thread(StalledSocket, node.server.port, f"/websocket?storeId={store_id}")
    stalled.send_text(json.dumps({"_tag": "WSMessage.PullReq", "requestId": "stalled-pull"}))
    connected_at = time.monotonic()
    rss = [("start", node.rss_kib())]

    sampling = True

    async def sample_memory():
        while sampling:
            rss.append((round(time.monotonic() - connected_at, 1), node.rss_kib()))
            await asyncio.sleep(0.25)

    sampler = asyncio.ensure_future(sample_memory())
    acks = {}
    started = time.monotonic()
    for number in range(EVENTS // BATCH):
        parent = pusher.head
        batch = [
            {
                "name": "v1.FaultEvent",
                "args": {"label": "pusher", "batch": number, "index": i, "size": BATCH, "padding": PADDING},
                "seqNum": parent + i + 1,
                "parentSeqNum": parent + i,
                "clientId": "pusher",
                "sessionId": "pusher-session",
            }
            for i in range(BATCH)
        ]
        outcome = await pusher.push(batch, timeout=10)
        assert outcome.acked, outcome.message
        acks[parent + BATCH] = outcome.answered_at
    pushing_seconds = time.monotonic() - started
    for reader in readers:
        assert await reader.wait_for_cursor(EVENTS, 10), f"{reader.name} stopped at e{reader.cursor}"
    latencies = sorted(max(reader.received_at[seq] for reader in readers) - ack_time for seq, ack_time in acks.items())
    peak_while_stalled = max(value for _, value in rss[1:] if value is not None)

    # The server drops the stalled socket by itself: daphne pings after 1 idle second, gives up 3 s later.
    waited = await asyncio.to_thread(stalled.wait_until_dropped, 15)
    dropped_after = None if waited is None else time.monotonic() - connected_at
    state_after_drop = stalled.state()
    await asyncio.sleep(1.0)
    sampling = False
    await sampler
    after_drop = node.rss_kib()
    received, ending, close_code = await asyncio.to_thread(stalled.drain, 5)
    stalled.close()
    await close_all([*readers, pusher])

    observe("events pushed / seconds", f"{EVENTS} / {pushing_seconds:.2f}")
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    observe("ack-to-all-readers latency p50 / p99 / max s", (statistics.median(latencies), p99, latencies[-1]))
    observe("stalled socket: dropped by the server s after connecting", dropped_after)
    observe("stalled socket: TCP state once dropped", state_after_drop)
    observe("stalled socket: reading afterwards ends with", ending)
    observe("stalled socket: close frame code among what it could still read", close_code)
    observe("stalled socket: bytes it could still read", received)
    observe("daphne RSS KiB: start / peak while stalled / after drop", (rss[0][1], peak_while_stalled, after_drop))
    observe("daphne RSS KiB samples (s, KiB)", rss[:: max(1, len(rss) // 12)])

    for reader in readers:
        assert reader.violations == [] and reader.seq_nums() == list(range(1, EVENTS + 1)), reader.name
    assert statistics.median(latencies) < 0.1, "the stalled socket slowed the store's other sockets"
    assert latencies[-1] < 1.0, "the stalled socket slowed the store's other sockets"
    assert dropped_after is not None, "the server never dropped the socket that stopped reading"
    assert ending in ("eof", "reset")


async def test_socket_whose_store_messages_pile_up_is_closed_with_1013(nodes, store_id, observe):
    """Its consumer is busy (a pull whose ON_PULL hook takes 2 s) while 60 pushes are broadcast; with
    SOCKET_QUEUE_SIZE 20 its inbox overflows and it is closed with 1013, while the other sockets go on."""
    settings = {
        "DJANGO_SETTINGS_MODULE": "tests.faults.settings",
        "LIVESYNC_FAULTS_SOCKET_QUEUE_SIZE": "20",
        "LIVESYNC_FAULTS_SLOW_PULL_SECONDS": "2",
    }
    (node,) = nodes(1, settings=settings)
    (busy,) = await open_sockets([("busy", node.url(store_id))], pull=False)
    reader, pusher = await open_sockets([("reader", node.url(store_id)), ("pusher", node.url(store_id))])
    await busy.send({"_tag": "WSMessage.PullReq", "requestId": "slow-pull"})
    await asyncio.sleep(0.2)
    record = await push_batches(pusher, "pusher", 60, 1)
    pushed_at = time.monotonic()
    await asyncio.wait_for(busy.closed.wait(), 10)
    closed_after = busy.closed_at - pushed_at
    assert await reader.wait_for_cursor(60, 5)
    await close_all([busy, reader, pusher])

    pulled = [len(frame["batch"]) for frame in busy.frames_of("WSMessage.PullRes")]
    observe("busy socket close code", busy.close_code)
    observe("busy socket closed s after the last push", closed_after)
    observe("busy socket PullRes sizes before the close", pulled)
    observe("server log lines 'messages behind'", node.log_count("messages behind"))
    assert len(record.acked) == 60
    assert busy.close_code == CLOSE_TOO_SLOW == 1013
    assert node.log_count("messages behind") == 1
    assert reader.violations == [] and reader.seq_nums() == list(range(1, 61))
    assert check_whole_batches(reader.history) == []
