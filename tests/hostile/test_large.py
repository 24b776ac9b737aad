"""Events and batches as large as the server accepts are delivered too, to every subscriber (cases 2 and 3).

daphne refuses to send a message over 1 MiB. A store of large events must stay pullable, and a batch whose
echo would exceed a frame must reach every subscriber, of both generations and in every process, as a
contiguous run — not as a gap that no head check repairs.
"""

import asyncio

import pytest

from tests.support.v03_socket import SyncSocket, store_url
from tests.support.v04_socket import RpcSocket, events

pytestmark = pytest.mark.hostile

LARGE_ARGS = {"text": "x" * 15_000}
# The smallest event the client schema allows: a 10,000-event push is an ~850 kB frame, under MAX_MESSAGE_BYTES,
# whose echo (each event with its createdAt) is about twice that.
HUGE_BATCH = 10_000


def tiny_events(first, last):
    return [
        {"name": "e", "args": {}, "seqNum": n, "parentSeqNum": n - 1, "clientId": "c", "sessionId": "s"}
        for n in range(first, last + 1)
    ]


async def test_a_0_3_store_of_large_events_stays_pullable(server, store_id):
    writer = await SyncSocket("writer", store_url(server.url, store_id)).open()
    for seq_num in range(1, 101):
        outcome = await writer.push(events(seq_num, seq_num, args=LARGE_ARGS))
        assert outcome.acked, outcome.message
    reader = await SyncSocket("reader", store_url(server.url, store_id)).open()
    assert reader.seq_nums() == list(range(1, 101)) and reader.violations == []
    pulls = [frame for frame in reader.frames_of("WSMessage.PullRes") if frame["requestId"]["context"] == "pull"]
    assert len(pulls) > 1, "100 events of 15 kB must not travel in one frame"
    rpc = await RpcSocket(server.url, store_id).open()
    pull = await rpc.live_pull()
    await rpc.wait_for_seq(pull, 100)
    assert rpc.violations == []
    for client in (writer, reader, rpc):
        await client.close()


async def _huge_push_reaches(pusher, subscribers, rpc_subscribers):
    outcome = await pusher.push(tiny_events(1, HUGE_BATCH), timeout=30)
    assert outcome.acked, outcome.message
    await asyncio.sleep(0.5)
    answers = [f for f in pusher.frames_of("WSMessage.Error") if f["requestId"] == outcome.request_id]
    assert answers == [], "the pusher got a second answer for its acknowledged push"
    follow_up = await pusher.push(tiny_events(HUGE_BATCH + 1, HUGE_BATCH + 1))
    assert follow_up.acked, follow_up.message
    last = HUGE_BATCH + 1
    for subscriber in [pusher, *subscribers]:
        assert await subscriber.wait_for_cursor(last, 20), f"{subscriber.name} stopped at e{subscriber.cursor}"
        assert subscriber.violations == [], subscriber.violations
        assert subscriber.seq_nums() == list(range(1, last + 1))
    for rpc, pull in rpc_subscribers:
        await rpc.wait_for_seq(pull, last, 20)
        assert rpc.violations == [] and rpc.live[pull] == list(range(1, last + 1))


async def test_an_echo_over_a_frame_reaches_every_subscriber_without_a_gap(server, store_id):
    pusher = await SyncSocket("pusher", store_url(server.url, store_id)).open()
    subscribers = [await SyncSocket(f"reader-{n}", store_url(server.url, store_id)).open() for n in range(2)]
    rpc = await RpcSocket(server.url, store_id).open()
    pull = await rpc.live_pull()
    await rpc.wait_for(lambda: rpc.chunks.get(pull))
    await _huge_push_reaches(pusher, subscribers, [(rpc, pull)])
    for client in (pusher, *subscribers, rpc):
        await client.close()


async def test_an_echo_over_a_frame_reaches_subscribers_in_another_process(two_processes, store_id):
    first, second = two_processes
    pusher = await SyncSocket("pusher", store_url(first.url, store_id)).open()
    subscribers = [
        await SyncSocket("same-process", store_url(first.url, store_id)).open(),
        await SyncSocket("other-process", store_url(second.url, store_id)).open(),
    ]
    rpc = await RpcSocket(second.url, store_id).open()
    pull = await rpc.live_pull()
    await rpc.wait_for(lambda: rpc.chunks.get(pull))
    await _huge_push_reaches(pusher, subscribers, [(rpc, pull)])
    for client in (pusher, *subscribers, rpc):
        await client.close()
