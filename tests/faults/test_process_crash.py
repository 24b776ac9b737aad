"""Crash safety: a daphne process is SIGKILLed while its sockets push batches as fast as they are acknowledged."""

import asyncio
import time

import pytest

from tests.support.cluster import database_head, stored_events
from tests.support.v03_socket import (
    batch_key,
    check_whole_batches,
    close_all,
    fetch_history,
    open_sockets,
    push_batches,
)

pytestmark = pytest.mark.faults

BATCH_SIZE = 5
ACKED_BATCHES_BEFORE_KILL = 30
CATCH_UP_TIMEOUT = 6.0  # several HEAD_CHECK_INTERVALs (1 s): a stale head is nudged after one to two of them


async def test_sigkill_during_pushes_loses_no_acknowledged_event(nodes, store_id, fault_database, observe):
    victim, survivor = nodes(2)
    victim_pushers = await open_sockets([(f"victim-pusher-{n}", victim.url(store_id)) for n in range(3)])
    readers = await open_sockets([(f"survivor-reader-{n}", survivor.url(store_id)) for n in range(2)])
    (survivor_pusher,) = await open_sockets([("survivor-pusher", survivor.url(store_id))])

    pushing = [
        asyncio.ensure_future(push_batches(sock, sock.name, 10_000, BATCH_SIZE, push_timeout=10))
        for sock in victim_pushers
    ]

    def acked_so_far():
        return sum(len(sock.frames_of("WSMessage.PushAck")) for sock in victim_pushers)

    deadline = time.monotonic() + 20
    while acked_so_far() < ACKED_BATCHES_BEFORE_KILL and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert acked_so_far() >= ACKED_BATCHES_BEFORE_KILL, "the victim never acknowledged enough pushes"

    victim.server.kill()
    killed_at = time.monotonic()
    readers_at_kill = [reader.cursor for reader in readers]
    records = await asyncio.wait_for(asyncio.gather(*pushing), 15)
    assert all(record.stopped_by == "connection closed" for record in records), [r.stopped_by for r in records]
    close_codes = sorted({sock.close_code for sock in victim_pushers}, key=str)

    # Everything the victim committed reaches the survivor's sockets, broadcast or not (head checks).
    head_after_crash = database_head(fault_database, store_id)
    caught_up = await asyncio.gather(
        *(reader.wait_for_cursor(head_after_crash, CATCH_UP_TIMEOUT) for reader in readers)
    )
    catch_up_seconds = max(reader.received_at.get(head_after_crash, float("inf")) for reader in readers) - killed_at
    assert all(caught_up), (
        f"survivor sockets stopped at {[reader.cursor for reader in readers]}, the store's head is e{head_after_crash}"
    )

    # The survivor keeps serving: its own pusher adds batches and every survivor socket sees them.
    survivor_record = await asyncio.wait_for(push_batches(survivor_pusher, "survivor-pusher", 10, BATCH_SIZE), 30)
    final_head = database_head(fault_database, store_id)
    assert final_head == head_after_crash + 10 * BATCH_SIZE
    for sock in (*readers, survivor_pusher):
        assert await sock.wait_for_cursor(final_head, 5), f"{sock.name} stopped at e{sock.cursor} of e{final_head}"

    # The restarted victim serves the same history.
    victim.server.start()
    restarted_history = await fetch_history(victim.url(store_id), "after-restart")
    survivor_history = await fetch_history(survivor.url(store_id), "survivor-verifier")
    await close_all([*readers, survivor_pusher])

    stored, head = stored_events(fault_database, store_id)
    assert head == final_head == len(stored)
    assert check_whole_batches(stored) == [], "partial or broken batches in the store"
    stored_ranges = {}
    for event in stored:
        first, last = stored_ranges.get(batch_key(event), (event["seqNum"], event["seqNum"]))
        stored_ranges[batch_key(event)] = (min(first, event["seqNum"]), max(last, event["seqNum"]))

    acked = {
        key: (first, last) for record in (*records, survivor_record) for key, (first, last, _) in record.acked.items()
    }
    lost = {key: where for key, where in acked.items() if stored_ranges.get(key) != where}
    assert lost == {}, f"acknowledged batches missing from (or moved in) the store: {lost}"
    in_flight = {key for record in records for key in record.unanswered}
    unexplained = set(stored_ranges) - set(acked) - in_flight
    assert unexplained == set(), f"stored batches nobody pushed or that were acknowledged elsewhere: {unexplained}"
    committed_unacked = set(stored_ranges) & in_flight

    wire = [(event["seqNum"], event["args"]) for event in stored]
    for reader in (*readers, survivor_pusher):
        assert reader.violations == [], reader.violations
        assert [(event["seqNum"], event["args"]) for event in reader.history] == wire, reader.name
    assert [(event["seqNum"], event["args"]) for event in restarted_history] == wire
    assert [(event["seqNum"], event["args"]) for event in survivor_history] == wire

    observe("victim close codes seen by its pushers", close_codes)
    observe("batches acknowledged by the victim", sum(len(record.acked) for record in records))
    observe("pushes in flight at the kill", len(in_flight))
    observe("  of which committed without an ack", len(committed_unacked))
    observe("store head after the kill", head_after_crash)
    observe("survivor readers' position at the kill", readers_at_kill)
    observe("survivor readers at the head after kill s", catch_up_seconds)
    observe("final head", final_head)
