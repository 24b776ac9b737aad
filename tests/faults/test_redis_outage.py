"""Redis outage: the channel layer of one process, then of every process, is cut while clients push.

Pushes commit and are acknowledged throughout; a socket gets its own process's events at once and the other
process's from the database (head checks, every HEAD_CHECK_INTERVAL = 1 s) until Redis is back, then from
broadcasts again. Each outage is logged once per process.

How an event reached a process is read from its ``/metrics``, not from a clock: a batch handed to its sockets
from another process's broadcast counts in ``livesync_fanout_seconds_count{path="remote"}``, a subscriber that
caught up from storage instead (a gap in the broadcasts, or a head check) in ``livesync_repairs_total``.
Latencies are printed as observations only.
"""

import asyncio
import statistics
import time
from collections import Counter

import pytest

from tests.support.cluster import database_head, stored_events
from tests.support.metrics import METRICS_SETTINGS, metric, metric_total
from tests.support.polling import wait_until
from tests.support.v03_socket import Pusher, check_whole_batches, close_all, open_sockets, push_batches

pytestmark = pytest.mark.faults

UNREACHABLE = "channel layer unreachable"
REACHABLE_AGAIN = "channel layer reachable again"
WINDOW = 2.0  # seconds one side pushes alone during an outage
PACE = 0.05  # seconds between one pusher's batches
# Liveness only (never a measure of how an event came): how long every socket may take to reach the stored head,
# and how long after a restore broadcasts may take to carry a round of pushes again. Generous for loaded machines.
CATCH_UP_SECONDS = 15
RESUME_SECONDS = 15
PROBE_SECONDS = 0.3  # one round of pushes from both sides, while waiting for broadcasts to resume


def repairs(node):
    """Subscribers of ``node`` that caught up from storage rather than from a broadcast, either cause."""
    return metric_total(node.server.http_url, "livesync_repairs_total")


def head_check_repairs(node):
    return metric(node.server.http_url, "livesync_repairs_total", cause="head_check")


def delivery(node):
    """How batches reached ``node``'s sockets so far: (fanned out from another process's broadcast, subscribers
    repaired from storage after a gap, after a head check)."""
    url = node.server.http_url
    return (
        metric(url, "livesync_fanout_seconds_count", path="remote"),
        metric(url, "livesync_repairs_total", cause="gap"),
        metric(url, "livesync_repairs_total", cause="head_check"),
    )


def remote_fanouts(node):
    """Batches ``node`` handed to its sockets from another process's broadcast."""
    return metric(node.server.http_url, "livesync_fanout_seconds_count", path="remote")


class Phase:
    """The name of what is going on now; each acknowledged batch is filed under the phase it was acked in."""

    def __init__(self):
        self.name = "healthy"


async def paced_pusher(sock, active, stop, phase, acked_in, pushing):
    record = Pusher(sock.name)
    number = 0
    while not stop.is_set():
        if not active.is_set():
            await asyncio.sleep(0.01)
            continue
        pushing.add(sock.name)
        try:
            await push_batches(sock, sock.name, 1, 2, pusher=record, start=number)
        finally:
            pushing.discard(sock.name)
        first, last, ack_time = record.acked[(sock.name, number)]
        acked_in.append((phase.name, sock.name, first, last, ack_time))
        number += 1
        await asyncio.sleep(PACE)
    return record


async def test_redis_outage_of_one_then_every_process(nodes, store_id, fault_database, observe):
    a, b = nodes(2, settings=METRICS_SETTINGS)
    sockets = await open_sockets(
        [
            ("a-pusher", a.url(store_id)),
            ("a-reader", a.url(store_id)),
            ("b-pusher", b.url(store_id)),
            ("b-reader", b.url(store_id)),
        ]
    )
    a_pusher, a_reader, b_pusher, b_reader = sockets
    phase, stop, acked_in, pushing = Phase(), asyncio.Event(), [], set()
    a_active, b_active = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.ensure_future(paced_pusher(a_pusher, a_active, stop, phase, acked_in, pushing)),
        asyncio.ensure_future(paced_pusher(b_pusher, b_active, stop, phase, acked_in, pushing)),
    ]
    # Each process's sockets get the other process's pushes.
    other_pusher = {a.name: "b-pusher", b.name: "a-pusher"}

    async def run(name, seconds, *active):
        phase.name = name
        for event in (a_active, b_active):
            if event in active:
                event.set()
            else:
                event.clear()
        await asyncio.sleep(seconds)

    async def settle():
        """Stop pushing, let the push in flight finish, and wait until every socket has the stored head."""
        a_active.clear()
        b_active.clear()
        while pushing:
            await asyncio.sleep(0.01)
        head = await asyncio.to_thread(database_head, fault_database, store_id)
        for sock in sockets:
            assert await sock.wait_for_cursor(head, CATCH_UP_SECONDS), (
                f"{sock.name} stopped at e{sock.cursor} of e{head}"
            )

    async def read(counter):
        return {node.name: await asyncio.to_thread(counter, node) for node in (a, b)}

    async def broadcast_round(name, seconds):
        """Both sides push for ``seconds``. Per process: the other's pushes, and how they came there (broadcasts
        fanned out, subscribers repaired after a gap, after a head check)."""
        mark, before = len(acked_in), await read(delivery)
        await run(name, seconds, a_active, b_active)
        await settle()
        after = await read(delivery)
        pushed = Counter(pusher for _, pusher, *_ in acked_in[mark:])
        return {
            node: (
                pushed[other_pusher[node]],
                *(now - then for now, then in zip(after[node], before[node], strict=True)),
            )
            for node in (a.name, b.name)
        }

    def by_broadcast(delivered):
        """Every push of the other process reached each process in a broadcast of its own, and no socket there
        waited for a head check.

        Gap repairs are not counted against it: with both sides pushing, a process's own push may reach one
        of its sockets while the hub still writes the other process's previous broadcast to another of them
        (``StoreSocketConsumer.offer`` writes at once, and yields); that socket then catches up from storage
        and drops the broadcast when it comes. A lost broadcast shows as a fan-out short of the pushes.
        """
        return all(pushed > 0 and fanned == pushed and checks == 0 for pushed, fanned, _, checks in delivered.values())

    async def broadcasting_again(name):
        """Liveness: rounds of pushes from both sides until one round reaches each process by broadcasts alone."""
        deadline, rounds = time.monotonic() + RESUME_SECONDS, []
        while not rounds or not by_broadcast(rounds[-1]):
            assert time.monotonic() < deadline, (
                f"{name}: broadcasts did not resume within {RESUME_SECONDS} s; per round and process "
                f"(the other's pushes, broadcasts fanned out, gap repairs, head-check repairs): {rounds}"
            )
            rounds.append(await broadcast_round(f"{name}: resuming", PROBE_SECONDS))
        return len(rounds)

    async def wait_for_log(node, text, count, timeout=5.0):
        started = time.monotonic()
        ok = await asyncio.to_thread(wait_until, lambda: node.log_count(text) >= count, timeout)
        assert ok, f"{node.name} did not log {text!r} {count} time(s) within {timeout} s"
        return time.monotonic() - started

    resumed, rounds, delivered, head_checked = {}, {}, {}, {}
    try:
        delivered["healthy"] = await broadcast_round("healthy", 1.0)

        head_checks_before = await read(head_check_repairs)
        a.redis.cut()
        await run("a cut: b pushes", WINDOW, b_active)
        await run("a cut: a pushes", WINDOW, a_active)
        await settle()  # still cut: the other process's pushes can only come from head checks
        head_checks = await read(head_check_repairs)
        head_checked["a cut"] = {node: head_checks[node] - head_checks_before[node] for node in head_checks}
        a.redis.restore()
        resumed["a, after its own outage"] = await wait_for_log(a, REACHABLE_AGAIN, 1)
        rounds["a restored"] = await broadcasting_again("a restored")
        delivered["a restored"] = await broadcast_round("a restored", 1.5)

        head_checks_before = await read(head_check_repairs)
        a.redis.cut()
        b.redis.cut()
        await run("all cut: b pushes", WINDOW, b_active)
        await run("all cut: a pushes", WINDOW, a_active)
        await settle()
        head_checks = await read(head_check_repairs)
        head_checked["all cut"] = {node: head_checks[node] - head_checks_before[node] for node in head_checks}
        a.redis.restore()
        b.redis.restore()
        resumed["a, after the outage of all"] = await wait_for_log(a, REACHABLE_AGAIN, 2)
        resumed["b, after the outage of all"] = await wait_for_log(b, REACHABLE_AGAIN, 1)
        rounds["all restored"] = await broadcasting_again("all restored")
        delivered["all restored"] = await broadcast_round("all restored", 1.5)
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

    # Latency from the pusher's ack to the other process's reader, by phase: printed, not asserted.
    other_reader = {"a-pusher": b_reader, "b-pusher": a_reader}
    latencies = {}
    for name, pusher, _first, last, ack_time in acked_in:
        latencies.setdefault(name, []).append(other_reader[pusher].received_at[last] - ack_time)
    for name, values in latencies.items():
        observe(f"cross-process latency '{name}' max s (p50)", f"{max(values):.3f} ({statistics.median(values):.3f})")
    for name, seconds in resumed.items():
        observe(f"layer reachable again {name}: s after restore", seconds)
    for name, count in rounds.items():
        observe(f"rounds of {PROBE_SECONDS} s until broadcasts carried every push '{name}'", count)
    for name, values in delivered.items():
        observe(f"'{name}' per process: other's pushes, remote fan-outs, gap and head-check repairs", values)
    for name, values in head_checked.items():
        observe(f"head-check repairs during '{name}' per process", values)
    for node in (a, b):
        observe(f"{node.name} log lines '{UNREACHABLE}'", node.log_count(UNREACHABLE))
    observe("events", head)

    for name in ("a cut: b pushes", "a cut: a pushes", "all cut: b pushes", "all cut: a pushes"):
        assert latencies.get(name), f"nothing was pushed during {name!r}"
    # Cut off from each other, each process got the other's pushes from head checks (a's publishes failed while
    # its layer was cut, and b's never reached a's sockets).
    for name, values in head_checked.items():
        assert all(count > 0 for count in values.values()), f"{name}: caught up without a head check: {values}"
    # Healthy, and after each restore: every push of the other process was fanned out from its own broadcast,
    # and no subscriber waited for a head check. A process that stopped broadcasting (or kept its pushes off
    # Redis) after the outage leaves the count of remote fan-outs behind, and its pushes to head checks.
    for name, values in delivered.items():
        assert by_broadcast(values), (
            f"{name}: not every push came by broadcast; per process (the other's pushes, broadcasts fanned out, "
            f"gap repairs, head-check repairs): {values}"
        )

    # One log line per process per outage: a was cut twice, b once.
    assert a.log_count(UNREACHABLE) == 2
    assert b.log_count(UNREACHABLE) == 1


async def test_quiet_process_logs_one_outage_and_broadcasts_right_after_redis_returns(
    nodes, store_id, fault_database, observe
):
    """A process that pushes now and then (not under load) loses Redis for a moment.

    Its push during the outage is acknowledged and reaches the other process by a head check; once the
    process says the layer is reachable again, its next broadcasts reach the other process (each a remote
    fan-out there, with no repair from storage), and the outage is logged exactly once (a connection that
    died with the outage is no second outage).
    """
    a, b = nodes(2, settings=METRICS_SETTINGS)
    (reader,) = await open_sockets([("a-reader", a.url(store_id))])
    (pusher,) = await open_sockets([("b-pusher", b.url(store_id))])
    await push_batches(pusher, "b-pusher", 1, 2)
    assert await reader.wait_for_cursor(2, CATCH_UP_SECONDS)

    head_checks_before = head_check_repairs(a)
    b.redis.cut()
    cut_at = time.monotonic()
    await push_batches(pusher, "b-pusher", 1, 2, start=1)
    head_checked = await reader.wait_for_cursor(4, CATCH_UP_SECONDS)
    head_check_seconds = time.monotonic() - cut_at
    head_checks = head_check_repairs(a) - head_checks_before
    b.redis.restore()
    restored_at = time.monotonic()
    while b.log_count(REACHABLE_AGAIN) < 1 and time.monotonic() - restored_at < 5:
        await asyncio.sleep(0.05)
    resumed_after = time.monotonic() - restored_at
    await asyncio.sleep(1.5)  # past the next receive and head check

    latencies = []
    fanned_before, repaired_before = remote_fanouts(a), repairs(a)
    for number in range(2, 7):
        await push_batches(pusher, "b-pusher", 1, 2, start=number)
        sent = time.monotonic()
        assert await reader.wait_for_cursor(pusher.acked_head, CATCH_UP_SECONDS)
        latencies.append(reader.received_at[pusher.acked_head] - sent)
        await asyncio.sleep(0.1)
    fanned, repaired = remote_fanouts(a) - fanned_before, repairs(a) - repaired_before
    await close_all([reader, pusher])

    observe("push during the outage reached the other process (head check) after s", head_check_seconds)
    observe("layer reachable again after restore s", resumed_after)
    observe("latency of the next broadcasts s", [round(value, 3) for value in latencies])
    observe("the next 5 pushes: remote fan-outs, repairs in the other process", (fanned, repaired))
    observe(f"log lines '{UNREACHABLE}'", b.log_count(UNREACHABLE))
    observe(f"log lines '{REACHABLE_AGAIN}'", b.log_count(REACHABLE_AGAIN))

    assert head_checked, "the other process never got the event committed during the outage"
    assert head_checks > 0, "the push during the outage reached the other process without a head check"
    assert reader.violations == [] and reader.seq_nums() == list(range(1, 15))
    layer_lines = [line for line in b.log().splitlines() if "channel layer" in line]
    assert b.log_count(UNREACHABLE) == 1, "one outage, logged more than once:\n" + "\n".join(layer_lines)
    assert b.log_count(REACHABLE_AGAIN) == 1
    # Broadcasts resumed: each of the next pushes was fanned out in the other process from its broadcast, and
    # none of its sockets caught up from storage (a gap or a head check) meanwhile.
    assert (fanned, repaired) == (5, 0), f"broadcasts did not resume: {fanned} remote fan-outs, {repaired} repairs"
