"""Redis outage: the channel layer of one process, then of every process, is cut while clients push.

Pushes commit and are acknowledged throughout; a socket gets its own process's events at once and the other
process's from the database (head checks, every HEAD_CHECK_INTERVAL = 1 s) until Redis is back, then from
broadcasts again. Each outage is logged once per process.
"""

import asyncio
import statistics
import time

import pytest

from tests.support.cluster import database_head, stored_events
from tests.support.polling import wait_until
from tests.support.v03_socket import Pusher, check_whole_batches, close_all, open_sockets, push_batches

pytestmark = pytest.mark.faults

UNREACHABLE = "channel layer unreachable"
REACHABLE_AGAIN = "channel layer reachable again"
WINDOW = 2.0  # seconds one side pushes alone during an outage
PACE = 0.05  # seconds between one pusher's batches
HEAD_CHECK_BOUND = 3.5  # a head check delivers within two intervals (1 s each); generous for loaded machines
BROADCAST_BOUND = 0.5  # well under one interval: only a broadcast gets an event there that fast


class Phase:
    """The name of what is going on now; each acknowledged batch is filed under the phase it was acked in."""

    def __init__(self):
        self.name = "healthy"


async def paced_pusher(sock, active, stop, phase, acked_in):
    record = Pusher(sock.name)
    number = 0
    while not stop.is_set():
        if not active.is_set():
            await asyncio.sleep(0.01)
            continue
        await push_batches(sock, sock.name, 1, 2, pusher=record, start=number)
        first, last, ack_time = record.acked[(sock.name, number)]
        acked_in.append((phase.name, sock.name, first, last, ack_time))
        number += 1
        await asyncio.sleep(PACE)
    return record


async def test_redis_outage_of_one_then_every_process(nodes, store_id, fault_database, observe):
    a, b = nodes(2)
    sockets = await open_sockets(
        [
            ("a-pusher", a.url(store_id)),
            ("a-reader", a.url(store_id)),
            ("b-pusher", b.url(store_id)),
            ("b-reader", b.url(store_id)),
        ]
    )
    a_pusher, a_reader, b_pusher, b_reader = sockets
    phase, stop, acked_in = Phase(), asyncio.Event(), []
    a_active, b_active = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.ensure_future(paced_pusher(a_pusher, a_active, stop, phase, acked_in)),
        asyncio.ensure_future(paced_pusher(b_pusher, b_active, stop, phase, acked_in)),
    ]

    async def run(name, seconds, *active):
        phase.name = name
        for event in (a_active, b_active):
            if event in active:
                event.set()
            else:
                event.clear()
        await asyncio.sleep(seconds)

    async def wait_for_log(node, text, count, timeout=5.0):
        started = time.monotonic()
        ok = await asyncio.to_thread(wait_until, lambda: node.log_count(text) >= count, timeout)
        assert ok, f"{node.name} did not log {text!r} {count} time(s) within {timeout} s"
        return time.monotonic() - started

    resumed = {}
    try:
        await run("healthy", 1.0, a_active, b_active)

        a.redis.cut()
        await run("a cut: b pushes", WINDOW, b_active)
        await run("a cut: a pushes", WINDOW, a_active)
        a.redis.restore()
        a_active.clear()
        b_active.clear()
        resumed["a, after its own outage"] = await wait_for_log(a, REACHABLE_AGAIN, 1)
        await run("a restored", 1.5, a_active, b_active)

        a.redis.cut()
        b.redis.cut()
        await run("all cut: b pushes", WINDOW, b_active)
        await run("all cut: a pushes", WINDOW, a_active)
        a.redis.restore()
        b.redis.restore()
        a_active.clear()
        b_active.clear()
        resumed["a, after the outage of all"] = await wait_for_log(a, REACHABLE_AGAIN, 2)
        resumed["b, after the outage of all"] = await wait_for_log(b, REACHABLE_AGAIN, 1)
        await run("all restored", 1.5, a_active, b_active)
    finally:
        stop.set()
        records = await asyncio.wait_for(asyncio.gather(*tasks), 30)

    head = database_head(fault_database, store_id)
    for sock in sockets:
        assert await sock.wait_for_cursor(head, 5), f"{sock.name} stopped at e{sock.cursor} of e{head}"
    await close_all(sockets)

    for sock in sockets:
        assert sock.violations == [], sock.violations
        assert sock.seq_nums() == list(range(1, head + 1)), sock.name
    stored, stored_head = stored_events(fault_database, store_id)
    assert stored_head == head and check_whole_batches(stored) == []
    assert sum(len(record.acked) for record in records) * 2 == head
    assert all(record.stopped_by is None for record in records)

    # Latency from the pusher's ack to the other process's reader, by phase.
    other_reader = {"a-pusher": b_reader, "b-pusher": a_reader}
    latencies = {}
    for name, pusher, _first, last, ack_time in acked_in:
        latencies.setdefault(name, []).append(other_reader[pusher].received_at[last] - ack_time)
    for name, values in latencies.items():
        observe(f"cross-process latency '{name}' max s (p50)", f"{max(values):.3f} ({statistics.median(values):.3f})")
    for name, seconds in resumed.items():
        observe(f"broadcasts resumed {name}: s after restore", seconds)
    for node in (a, b):
        observe(f"{node.name} log lines '{UNREACHABLE}'", node.log_count(UNREACHABLE))
    observe("events", head)

    for name in ("a cut: b pushes", "a cut: a pushes", "all cut: b pushes", "all cut: a pushes"):
        assert latencies[name], f"nothing was pushed during {name!r}"
        assert max(latencies[name]) < HEAD_CHECK_BOUND, f"{name}: catch-up took {max(latencies[name]):.2f} s"
    for name in ("healthy", "a restored", "all restored"):
        assert statistics.median(latencies[name]) < BROADCAST_BOUND, f"{name}: broadcasts did not resume"
        assert max(latencies[name]) < HEAD_CHECK_BOUND, name

    # One log line per process per outage: a was cut twice, b once.
    assert a.log_count(UNREACHABLE) == 2
    assert b.log_count(UNREACHABLE) == 1


async def test_quiet_process_logs_one_outage_and_broadcasts_right_after_redis_returns(
    nodes, store_id, fault_database, observe
):
    """A process that pushes now and then (not under load) loses Redis for a moment.

    Its push during the outage is acknowledged and reaches the other process by a head check; once the
    process says the layer is reachable again, its next broadcasts reach the other process at once, and the
    outage is logged exactly once (a connection that died with the outage is no second outage).
    """
    a, b = nodes(2)
    (reader,) = await open_sockets([("a-reader", a.url(store_id))])
    (pusher,) = await open_sockets([("b-pusher", b.url(store_id))])
    await push_batches(pusher, "b-pusher", 1, 2)
    assert await reader.wait_for_cursor(2, 5)

    b.redis.cut()
    cut_at = time.monotonic()
    await push_batches(pusher, "b-pusher", 1, 2, start=1)
    head_checked = await reader.wait_for_cursor(4, HEAD_CHECK_BOUND + 1)
    head_check_seconds = time.monotonic() - cut_at
    b.redis.restore()
    restored_at = time.monotonic()
    while b.log_count(REACHABLE_AGAIN) < 1 and time.monotonic() - restored_at < 5:
        await asyncio.sleep(0.05)
    resumed_after = time.monotonic() - restored_at
    await asyncio.sleep(1.5)  # past the next receive and head check

    latencies = []
    for number in range(2, 7):
        await push_batches(pusher, "b-pusher", 1, 2, start=number)
        sent = time.monotonic()
        assert await reader.wait_for_cursor(pusher.acked_head, HEAD_CHECK_BOUND + 1)
        latencies.append(reader.received_at[pusher.acked_head] - sent)
        await asyncio.sleep(0.1)
    await close_all([reader, pusher])

    observe("push during the outage reached the other process (head check) after s", head_check_seconds)
    observe("layer reachable again after restore s", resumed_after)
    observe("latency of the next broadcasts s", [round(value, 3) for value in latencies])
    observe(f"log lines '{UNREACHABLE}'", b.log_count(UNREACHABLE))
    observe(f"log lines '{REACHABLE_AGAIN}'", b.log_count(REACHABLE_AGAIN))

    assert head_checked, "the other process never got the event committed during the outage"
    assert reader.violations == [] and reader.seq_nums() == list(range(1, 15))
    layer_lines = [line for line in b.log().splitlines() if "channel layer" in line]
    assert b.log_count(UNREACHABLE) == 1, "one outage, logged more than once:\n" + "\n".join(layer_lines)
    assert b.log_count(REACHABLE_AGAIN) == 1
    assert max(latencies) < BROADCAST_BOUND, f"broadcasts did not resume: latencies {latencies}"
