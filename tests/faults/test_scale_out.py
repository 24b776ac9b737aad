"""Scale-out: three daphne processes serve one store; pushers on every process race for the same parents."""

import asyncio
import statistics
import time

import pytest

from tests.support.cluster import database_head, stored_events
from tests.support.v03_socket import (
    PARENT_MISMATCH,
    batch_key,
    check_whole_batches,
    close_all,
    open_sockets,
    push_batches,
)

pytestmark = pytest.mark.faults

BATCHES_PER_PUSHER = 40


def batch_size(number):
    return 1 + number % 3


async def test_concurrent_pushes_through_three_processes_converge(nodes, store_id, fault_database, observe):
    processes = nodes(3)
    specs = []
    for node in processes:
        specs += [(f"{node.name}-pusher", node.url(store_id)), (f"{node.name}-reader", node.url(store_id))]
    sockets = await open_sockets(specs)
    pushers_sockets = [sock for sock in sockets if sock.name.endswith("pusher")]

    started = time.monotonic()
    pushing = [push_batches(sock, sock.name, BATCHES_PER_PUSHER, batch_size) for sock in pushers_sockets]
    records = await asyncio.wait_for(asyncio.gather(*pushing), 90)
    pushing_seconds = time.monotonic() - started
    last_ack = max(ack_time for record in records for (_, _, ack_time) in record.acked.values())

    total = sum(batch_size(n) for n in range(BATCHES_PER_PUSHER)) * len(pushers_sockets)
    reached = await asyncio.gather(*(sock.wait_for_cursor(total, 15) for sock in sockets))
    converged_after = max(sock.received_at.get(total, float("inf")) for sock in sockets) - last_ack
    await close_all(sockets)

    for sock, ok in zip(sockets, reached, strict=True):
        assert ok, f"{sock.name} stopped at e{sock.cursor} of e{total}"
        assert sock.violations == [], sock.violations
        assert sock.seq_nums() == list(range(1, total + 1)), sock.name
    reference = sockets[0].history
    for sock in sockets[1:]:
        assert sock.history == reference, f"{sock.name} received another history than {sockets[0].name}"

    stored, head = stored_events(fault_database, store_id)
    assert head == total == database_head(fault_database, store_id)
    assert check_whole_batches(stored) == []
    assert [(e["seqNum"], e["args"]) for e in stored] == [(e["seqNum"], e["args"]) for e in reference]

    # Every logical batch acknowledged once, stored once, where its acknowledgement said.
    acked = {key: (first, last) for record in records for key, (first, last, _) in record.acked.items()}
    assert len(acked) == BATCHES_PER_PUSHER * len(pushers_sockets)
    stored_ranges = {}
    for event in stored:
        first, last = stored_ranges.get(batch_key(event), (event["seqNum"], event["seqNum"]))
        stored_ranges[batch_key(event)] = (min(first, event["seqNum"]), max(last, event["seqNum"]))
    assert stored_ranges == acked

    # Each parent won exactly once; every loser got the reference's rejection naming a later head.
    attempts = [attempt for record in records for attempt in record.attempts]
    winners = {}
    for attempt in attempts:
        if attempt.acked:
            assert attempt.parent not in winners, f"parent e{attempt.parent} acknowledged twice"
            winners[attempt.parent] = attempt
    assert sorted(winners) == sorted(first - 1 for first, _ in acked.values())
    rejections = [attempt for attempt in attempts if not attempt.acked]
    for attempt in rejections:
        mismatch = PARENT_MISMATCH.match(attempt.message)
        assert mismatch, attempt.message
        received, expected = int(mismatch.group(1)), int(mismatch.group(2))
        assert received == attempt.parent and expected > received
    first_round = [attempt for attempt in attempts if attempt.parent == 0]
    assert sum(attempt.acked for attempt in first_round) == 1

    latencies = [
        max(sock.received_at[seq] for sock in sockets) - ack_time
        for record in records
        for (_, seq, ack_time) in record.acked.values()
    ]
    observe("events", total)
    observe("push attempts", len(attempts))
    observe("parent mismatches (rebased and retried)", len(rejections))
    observe("pushing took s", pushing_seconds)
    observe("all sockets at head after last ack s", converged_after)
    observe("ack-to-last-socket latency p50 s", statistics.median(latencies))
    observe("ack-to-last-socket latency max s", max(latencies))
    assert len(rejections) > 0, "the pushers never raced: the test proved nothing about conflicts"
