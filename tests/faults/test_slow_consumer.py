"""Slow consumers: a socket that stops reading, and a socket whose store messages pile up faster than it
handles them."""

import asyncio
import json
import statistics
import time

import pytest

from syncapp.server.websocket import CLOSE_TOO_SLOW
from tests.support.stalled import StalledSocket
from tests.support.v03_socket import check_whole_batches, close_all, open_sockets, push_batches

pytestmark = pytest.mark.faults

PING_ARGS = ("--ping-interval", "1", "--ping-timeout", "3")
EVENTS = 2000
BATCH = 10
PADDING = "x" * 3000  # makes the never-read backlog (~6 MB) outgrow the kernel socket buffers
# While the stalled socket is connected, its store's readers must get each push about as soon as the readers of
# a store without one, pushed in turn with it by the same process: on the median, and on the 90th percentile.
SLOWER_AT_MOST = 3
# Pushes to compare at the least, in case the server drops the stalled socket early.
PAIRS_AT_LEAST = 20


def padded_batch(label, number, parent):
    return [
        {
            "name": "v1.FaultEvent",
            "args": {"label": label, "batch": number, "index": i, "size": BATCH, "padding": PADDING},
            "seqNum": parent + i + 1,
            "parentSeqNum": parent + i,
            "clientId": label,
            "sessionId": f"{label}-session",
        }
        for i in range(BATCH)
    ]


async def push_and_time(pusher, readers, number):
    """Push batch ``number``; returns ``(requestId, seqNums, seconds from sending it until every reader had it)``."""
    parent = pusher.head
    outcome = await pusher.push(padded_batch(pusher.name, number, parent), timeout=30)
    assert outcome.acked, outcome.message
    last = parent + BATCH
    for reader in readers:
        assert await reader.wait_for_cursor(last, 30), f"{reader.name} stopped at e{reader.cursor}"
    latency = max(reader.received_at[last] for reader in readers) - outcome.sent_at
    return outcome.request_id, list(range(parent + 1, last + 1)), latency


def broadcasts_received(reader):
    """``(requestId, seqNums)`` of each push broadcast the reader got, in order."""
    return [
        (frame["requestId"]["requestId"], [item["eventEncoded"]["seqNum"] for item in frame["batch"]])
        for frame in reader.frames_of("WSMessage.PullRes")
        if frame["requestId"]["context"] == "push"
    ]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def test_stalled_socket_does_not_slow_its_store_and_is_dropped_by_the_ping_timeout(nodes, store_id, observe):
    """A socket pulls and then never reads, in a store that 3 readers follow while 2,000 padded events are pushed.
    Its store's pushes alternate with pushes to a control store (3 readers, no stalled socket) on the same
    process, so both see the same load: the readers of the stalled one must get every push as its own live
    broadcast, in order, about as soon as the control store's readers; and the server drops the stalled socket."""
    (node,) = nodes(1, daphne_args=PING_ARGS)
    control_id = f"{store_id}-control"
    readers = await open_sockets([(f"reader-{n}", node.url(store_id)) for n in range(3)])
    control_readers = await open_sockets([(f"control-reader-{n}", node.url(control_id)) for n in range(3)])
    pusher, control_pusher = await open_sockets([("pusher", node.url(store_id)), ("control", node.url(control_id))])
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
    pushed, control_pushed, pairs = [], [], []
    started = time.monotonic()
    for number in range(EVENTS // BATCH):
        stalled_before = stalled.state() == "ESTABLISHED"
        pushed.append(await push_and_time(pusher, readers, number))
        control_pushed.append(await push_and_time(control_pusher, control_readers, number))
        if stalled_before and stalled.state() == "ESTABLISHED":
            pairs.append((pushed[-1][2], control_pushed[-1][2]))
    pushing_seconds = time.monotonic() - started
    peak_while_stalled = max(value for _, value in rss[1:] if value is not None)

    # The server drops the stalled socket by itself: daphne pings after 1 idle second, gives up 3 s later.
    waited = await asyncio.to_thread(stalled.wait_until_dropped, 30)
    dropped_after = None if waited is None else time.monotonic() - connected_at
    state_after_drop = stalled.state()
    await asyncio.sleep(1.0)
    sampling = False
    await sampler
    after_drop = node.rss_kib()
    received, ending, close_code = await asyncio.to_thread(stalled.drain, 5)
    stalled.close()
    closed_by_the_server = [reader.name for reader in readers if reader.closed.is_set()]
    await close_all([*readers, *control_readers, pusher, control_pusher])

    latencies = [latency for latency, _ in pairs]
    control_latencies = [latency for _, latency in pairs]
    observe("events pushed to each store / seconds", f"{EVENTS} / {pushing_seconds:.2f}")
    observe("pushes while the socket was stalled", len(pairs))
    for name, values in (("stalled store", latencies), ("control store", control_latencies)):
        if values:
            summary = (statistics.median(values), percentile(values, 0.9), max(values))
            summary = tuple(round(value * 1000, 2) for value in summary)
            observe(f"push-to-all-readers latency p50 / p90 / max ms, {name}", summary)
    observe("stalled socket: dropped by the server s after connecting", dropped_after)
    observe("stalled socket: TCP state once dropped", state_after_drop)
    observe("stalled socket: reading afterwards ends with", ending)
    observe("stalled socket: close frame code among what it could still read", close_code)
    observe("stalled socket: bytes it could still read", received)
    observe("daphne RSS KiB: start / peak while stalled / after drop", (rss[0][1], peak_while_stalled, after_drop))
    observe("daphne RSS KiB samples (s, KiB)", rss[:: max(1, len(rss) // 12)])

    expected = [(request_id, seq_nums) for request_id, seq_nums, _ in pushed]
    assert closed_by_the_server == []
    for reader in readers:
        assert reader.violations == [], reader.violations[:3]
        assert reader.seq_nums() == list(range(1, EVENTS + 1)), reader.name
        # Each push reached it once, whole, as that push's own broadcast, in push order: none was held back
        # and sent later as a catch-up from storage.
        assert broadcasts_received(reader) == expected, reader.name
    assert len(pairs) >= PAIRS_AT_LEAST, f"the stalled socket was dropped after {len(pairs)} pushes: nothing to compare"
    for share in (0.5, 0.9):
        stalled_store, control_store = percentile(latencies, share), percentile(control_latencies, share)
        assert stalled_store <= SLOWER_AT_MOST * control_store, (
            f"the stalled socket slowed its store's readers: {share:.0%} of its pushes reached them within "
            f"{stalled_store * 1000:.1f} ms, against {control_store * 1000:.1f} ms in the control store"
        )
    assert dropped_after is not None, "the server never dropped the socket that stopped reading"
    assert ending in ("eof", "reset")


async def test_socket_whose_store_messages_pile_up_is_closed_with_1013(nodes, store_id, observe):
    """Its consumer is busy (a pull whose ON_PULL hook takes 2 s) while pushes are broadcast, one at a time, until
    it is closed; with SOCKET_QUEUE_SIZE 20 its inbox overflows and it is closed with 1013 once, while the other
    sockets go on."""
    settings = {
        "DJANGO_SETTINGS_MODULE": "tests.faults.settings",
        "LIVESYNC_FAULTS_SOCKET_QUEUE_SIZE": "20",
        "LIVESYNC_FAULTS_SLOW_PULL_SECONDS": "2",
    }
    (node,) = nodes(1, settings=settings)
    (busy,) = await open_sockets([("busy", node.url(store_id))], pull=False)
    reader, pusher = await open_sockets([("reader", node.url(store_id)), ("pusher", node.url(store_id))])
    await busy.send({"_tag": "WSMessage.PullReq", "requestId": "slow-pull"})
    # Pushed until the busy socket is closed, so nothing depends on when its slow pull began.
    record = await push_batches(pusher, "pusher", 500, 1, stop=busy.closed)
    pushed = len(record.acked)
    assert await reader.wait_for_cursor(pushed, 30), f"the reader stopped at e{reader.cursor} of e{pushed}"
    await close_all([busy, reader, pusher])

    pulled = [len(frame["batch"]) for frame in busy.frames_of("WSMessage.PullRes")]
    observe("busy socket close code", busy.close_code)
    observe("pushes broadcast until the busy socket was closed", pushed)
    observe("busy socket PullRes sizes before the close", pulled)
    observe("server log lines 'messages behind'", node.log_count("messages behind"))
    assert record.stopped_by == "stop", "the busy socket was never closed"
    assert busy.close_code == CLOSE_TOO_SLOW == 1013
    # More store messages than SOCKET_QUEUE_SIZE had to wait for it.
    assert pushed > 20
    assert node.log_count("messages behind") == 1
    assert record.unanswered == [] and record.rejections == []
    assert reader.violations == [] and reader.seq_nums() == list(range(1, pushed + 1))
    assert check_whole_batches(reader.history) == []
