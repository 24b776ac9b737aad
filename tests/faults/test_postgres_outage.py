"""PostgreSQL outage: one process loses its database while clients push; it recovers without a restart."""

import asyncio
import time

import pytest

from tests.support.cluster import database_head, stored_events
from tests.support.metrics import METRICS_SETTINGS, metric
from tests.support.v03_socket import (
    PARENT_MISMATCH,
    batch_key,
    check_whole_batches,
    close_all,
    make_batch,
    open_sockets,
    push_batches,
)

pytestmark = pytest.mark.faults

DATABASE_DOWN = "Push failed: the database is unavailable"
PULL_DATABASE_DOWN = "Pull failed: the database is unavailable"
LATE_ACK_GRACE = 1.5  # seconds a rejected push is watched for an acknowledgement that must never come


async def test_postgres_outage_rejects_pushes_and_recovers_without_restart(nodes, store_id, fault_database, observe):
    a, b = nodes(2)
    sockets = await open_sockets(
        [
            ("a-pusher", a.url(store_id)),
            ("a-reader", a.url(store_id)),
            ("b-pusher", b.url(store_id)),
            ("b-reader", b.url(store_id)),
        ]
    )
    a_pusher, a_reader, b_pusher, _ = sockets
    before = await push_batches(a_pusher, "a-pusher", 5, 3)

    a.pg.cut()
    cut_at = time.monotonic()
    failures = []
    for attempt in range(3):
        batch = make_batch("a-pusher", 100 + attempt, 3, a_pusher.head)
        outcome = await a_pusher.push(batch, timeout=15)
        failures.append(outcome)
    first_error_after = failures[0].answered_at - failures[0].sent_at
    pull_answer = await a_pusher.request(
        {"_tag": "WSMessage.PullReq", "requestId": "pull-during-outage", "cursor": a_pusher.cursor}, timeout=15
    )

    # The other process still has its database: it commits, and a's sockets get those events by broadcast.
    during = await push_batches(b_pusher, "b-pusher", 3, 3)
    head_during = database_head(fault_database, store_id)
    a_reader_got_broadcasts = await a_reader.wait_for_cursor(head_during, 5)

    await asyncio.sleep(LATE_ACK_GRACE)
    a.pg.restore()
    restored_at = time.monotonic()
    first_push_after = await a_pusher.push(make_batch("a-pusher", 200, 3, a_pusher.head), timeout=15)
    recovery = time.monotonic() - restored_at
    after = await push_batches(a_pusher, "a-pusher", 5, 3, start=300)
    head = database_head(fault_database, store_id)
    for sock in sockets:
        assert await sock.wait_for_cursor(head, 5), f"{sock.name} stopped at e{sock.cursor} of e{head}"
    await close_all(sockets)

    observe("first push after the cut answered in s", first_error_after)
    observe("answers during the outage", [f.message for f in failures])
    observe("pull during the outage", pull_answer.get("message", pull_answer["_tag"]))
    observe("a's sockets got b's events by broadcast during a's outage", a_reader_got_broadcasts)
    observe("first push after restore", "acknowledged" if first_push_after.acked else first_push_after.message)
    observe("first push after restore answered after s", recovery)
    observe("outage lasted s", restored_at - cut_at)

    for outcome in failures:
        assert not outcome.acked
        assert outcome.message.startswith(DATABASE_DOWN), outcome.message
    failed_ids = {outcome.request_id for outcome in failures}
    late_acks = [frame for frame in a_pusher.frames_of("WSMessage.PushAck") if frame["requestId"] in failed_ids]
    assert late_acks == [], "a push answered with an error was acknowledged later"
    assert pull_answer["_tag"] == "WSMessage.Error" and pull_answer["message"].startswith(PULL_DATABASE_DOWN)
    assert a_reader_got_broadcasts, "a's sockets should still get other processes' broadcasts"
    assert first_push_after.acked, f"the first push after the restore failed: {first_push_after.message}"

    stored, stored_head = stored_events(fault_database, store_id)
    assert stored_head == head == len(stored)
    assert check_whole_batches(stored) == []
    stored_keys = {batch_key(event) for event in stored}
    acked_keys = {*before.acked, *during.acked, *after.acked, ("a-pusher", 200)}
    assert stored_keys == acked_keys, "stored batches differ from acknowledged ones"
    for sock in sockets:
        assert sock.violations == [], sock.violations
        assert sock.seq_nums() == list(range(1, head + 1)), sock.name


async def test_postgres_flapping_under_load_never_acknowledges_a_lost_push(nodes, store_id, fault_database, observe):
    """The database connection is cut again and again while three sockets push as fast as they are answered.

    An acknowledged batch is always stored, a batch answered "nothing was stored" never is, and no batch is
    stored partially or twice (a pusher whose retry is rejected looks for its batch in what it received).
    """
    a, b = nodes(2)
    pushers = await open_sockets([(f"a-pusher-{n}", a.url(store_id)) for n in range(3)])
    (reader,) = await open_sockets([("b-reader", b.url(store_id))])
    stop = asyncio.Event()
    acked, answered_down, seen_in_stream = {}, {}, set()

    async def pusher(sock):
        number = 0
        while not stop.is_set():
            key = (sock.name, number)
            while True:
                batch = make_batch(sock.name, number, 3, sock.head)
                outcome = await sock.push(batch, timeout=15)
                if outcome.acked:
                    acked[key] = (batch[0]["seqNum"], batch[-1]["seqNum"])
                    break
                if outcome.message.startswith(DATABASE_DOWN):
                    answered_down.setdefault(key, []).append(outcome.message)
                    await asyncio.sleep(0.02)
                    continue
                mismatch = PARENT_MISMATCH.match(outcome.message)
                assert mismatch, f"{sock.name}: unexpected answer {outcome.message!r}"
                expected = int(mismatch.group(2))
                assert await sock.wait_for_cursor(expected, 10), f"{sock.name} never reached e{expected}"
                if key in {batch_key(event) for event in sock.history}:
                    seen_in_stream.add(key)  # committed after all, though the answer was an error
                    break
            number += 1

    tasks = [asyncio.ensure_future(pusher(sock)) for sock in pushers]
    cuts = 0
    try:
        await asyncio.sleep(0.3)
        for _ in range(6):
            a.pg.cut()
            cuts += 1
            await asyncio.sleep(0.15)
            a.pg.restore()
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    head = database_head(fault_database, store_id)
    for sock in (*pushers, reader):
        assert await sock.wait_for_cursor(head, 5), f"{sock.name} stopped at e{sock.cursor} of e{head}"
    await close_all([*pushers, reader])

    stored, _ = stored_events(fault_database, store_id)
    ranges = {}
    for event in stored:
        first, last = ranges.get(batch_key(event), (event["seqNum"], event["seqNum"]))
        ranges[batch_key(event)] = (min(first, event["seqNum"]), max(last, event["seqNum"]))
    # A batch stored without an ack was committed by the attempt answered last before it showed up in the
    # pusher's stream; that answer must not have claimed that nothing was stored.
    stored_although_down = sorted(
        key
        for key, answers in answered_down.items()
        if key in ranges and key not in acked and "nothing was stored" in answers[-1]
    )
    in_doubt = sorted(key for key in answered_down if key in ranges and key not in acked)

    observe("database cuts", cuts)
    observe("batches acknowledged", len(acked))
    observe("push answers 'database unavailable'", sum(len(v) for v in answered_down.values()))
    observe("batches stored although their push was answered with an error", in_doubt)
    observe("  of which the answer said 'nothing was stored'", stored_although_down)
    observe("answers seen", sorted({answer for answers in answered_down.values() for answer in answers}))

    assert check_whole_batches(stored) == []
    assert all(ranges.get(key) == where for key, where in acked.items()), "an acknowledged batch is not stored"
    assert set(ranges) <= set(acked) | seen_in_stream
    assert stored_although_down == [], "the server said 'nothing was stored' about a batch it had committed"
    for sock in (*pushers, reader):
        assert sock.violations == [], sock.violations
    assert [(e["seqNum"], e["args"]) for e in reader.history] == [(e["seqNum"], e["args"]) for e in stored]


async def test_socket_needing_a_repair_while_its_database_is_down_stays_open_and_catches_up(
    nodes, store_id, fault_database, observe
):
    """A lost broadcast is noticed while the socket's process cannot read the database.

    b's Redis is cut while b commits batch 1, so that broadcast is lost; a's database is cut too, so a's head
    checks cannot find it. When b's Redis is back, b's next broadcast reaches a's reader, which is now a batch
    behind: it must be repaired from storage, which a cannot read yet. The socket must stay open and be
    repaired once a's database is back (within a few head checks), without any new push.
    """
    a, b = nodes(2, settings=METRICS_SETTINGS)
    (reader,) = await open_sockets([("a-reader", a.url(store_id))])
    (pusher,) = await open_sockets([("b-pusher", b.url(store_id))])
    await push_batches(pusher, "b-pusher", 1, 2)
    assert await reader.wait_for_cursor(2, 5)

    b.redis.cut()
    a.pg.cut()
    await push_batches(pusher, "b-pusher", 1, 2, start=1)  # its broadcast is lost with b's Redis
    # Only once b's hub has given the broadcast up: redis-py retries a send across a short cut, and one that
    # got through after the restore would not be lost.
    started = time.monotonic()
    while b.log_count("channel layer unreachable") < 1 and time.monotonic() - started < 15:
        await asyncio.sleep(0.05)
    assert b.log_count("channel layer unreachable") >= 1, "b's hub never found its Redis cut"
    b.redis.restore()
    started = time.monotonic()
    while b.log_count("channel layer reachable again") < 1 and time.monotonic() - started < 5:
        await asyncio.sleep(0.05)
    assert b.log_count("channel layer reachable again") >= 1, "b's channel layer did not come back"

    # a's hub hands b's broadcasts to its sockets again: proof that they reach a (the reader, a batch behind,
    # cannot be repaired while a's database is cut).
    def remote_broadcasts():
        return metric(a.server.http_url, "livesync_fanout_seconds_count", path="remote")

    number, reached_a = 2, False
    while not reached_a and number < 8:
        before = remote_broadcasts()
        await push_batches(pusher, "b-pusher", 1, 2, start=number)
        deadline = time.monotonic() + 1.0
        while not (reached_a := remote_broadcasts() > before) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        number += 1
    assert reached_a, "b's broadcasts never reached a again after b's Redis came back"
    head = pusher.acked_head
    await asyncio.sleep(1.5)
    open_during_outage = not reader.closed.is_set()
    cursor_during_outage = reader.cursor

    a.pg.restore()
    restored_at = time.monotonic()
    caught_up = await reader.wait_for_cursor(head, 6)
    catch_up_seconds = time.monotonic() - restored_at
    observe("pushes until a broadcast reached a again", number - 2)
    observe("reader open while its database was down", open_during_outage)
    observe("reader close code", reader.close_code)
    observe("reader position during the outage / head", f"{cursor_during_outage} / {head}")
    observe("reader at the head after the database returned s", catch_up_seconds if caught_up else None)
    await close_all([reader, pusher])

    assert open_during_outage, f"the reader was closed with {reader.close_code} ({reader.close_reason!r})"
    assert caught_up, f"the reader stayed at e{reader.cursor} of e{head} after the database came back"
    assert reader.violations == [], reader.violations
    assert reader.seq_nums() == list(range(1, head + 1))
