"""A store followed in one process only: its pushes stay off Redis, until a socket in another process follows it.

Two real daphne processes on PostgreSQL + Redis. While the store's sockets
all sit in the first process, its hub sends their events through Redis no
more (``syncapp.fanout.followers``). A socket of the store in the second process
then gets every later event as it is committed: the events kept before the
second process's follow notice arrived as a head nudge, the later ones
through Redis.

How the events reached the second process is read from its ``/metrics``, not
from a clock: each batch fanned out there from a broadcast counts in
``livesync_fanout_seconds_count{path="remote"}``, each subscriber that caught
up from storage (a head nudge or check, a gap) in ``livesync_repairs_total``.
"""

import asyncio

import pytest

from tests.support.metrics import METRICS_SETTINGS, metric, metric_total
from tests.support.v03_socket import close_all, make_batch, open_sockets

pytestmark = pytest.mark.faults

WARM_UP_PUSHES_AT_MOST = 250
ALONE_PUSHES = 20
FOLLOWED_PUSHES = 10
# Far above a follow notice's trip through Redis, far below the head check's interval.
NOTICE_SECONDS = 0.2
# Liveness only: how long the follower may take to get every event, however they come.
CATCH_UP_SECONDS = 10


def kept_local(node):
    return metric(node.server.http_url, "livesync_broadcasts_kept_local_total")


def delivery(node):
    """``(batches fanned out from another process's broadcast, subscribers repaired from storage)`` so far."""
    url = node.server.http_url
    return metric(url, "livesync_fanout_seconds_count", path="remote"), metric_total(url, "livesync_repairs_total")


async def test_pushes_stay_off_redis_until_another_process_follows_and_then_reach_it_at_once(nodes, store_id, observe):
    a, b = nodes(2, settings=METRICS_SETTINGS)
    (pusher,) = await open_sockets([("pusher", a.url(store_id))])
    pushed = 0

    async def push():
        nonlocal pushed
        outcome = await pusher.push(make_batch("pusher", pushed, 1, pushed))
        assert outcome.acked
        pushed += 1
        return outcome

    # Until the hub has heard Redis count its subscribers (channels_redis's receiver starts within 0.1 s).
    while kept_local(a) == 0 and pushed < WARM_UP_PUSHES_AT_MOST:
        await push()
        await asyncio.sleep(0.02)
    kept_before = kept_local(a)
    for _ in range(ALONE_PUSHES):
        await push()
    kept_alone = kept_local(a) - kept_before
    assert kept_alone == ALONE_PUSHES, f"{ALONE_PUSHES - kept_alone} of {ALONE_PUSHES} pushes went to Redis"

    (follower,) = await open_sockets([("follower", b.url(store_id))])
    assert follower.seq_nums() == list(range(1, pushed + 1))
    acked_at = {}
    # Pushed at once: those the first process keeps before the follow notice reaches it come as a head nudge.
    kept_before, (fanned_before, repaired_before) = kept_local(a), delivery(b)
    for _ in range(FOLLOWED_PUSHES):
        outcome = await push()
        acked_at[pushed] = outcome.answered_at
    assert await follower.wait_for_cursor(pushed, CATCH_UP_SECONDS), f"the follower stopped at e{follower.cursor}"
    (fanned, repaired), kept = delivery(b), kept_local(a)
    at_once = (kept - kept_before, fanned - fanned_before, repaired - repaired_before)
    await asyncio.sleep(NOTICE_SECONDS)
    kept_before, (fanned_before, repaired_before) = kept_local(a), delivery(b)
    for _ in range(FOLLOWED_PUSHES):
        outcome = await push()
        acked_at[pushed] = outcome.answered_at
    total = pushed
    assert await follower.wait_for_cursor(total, CATCH_UP_SECONDS), (
        f"the follower stopped at e{follower.cursor} of e{total}"
    )
    (fanned, repaired), kept = delivery(b), kept_local(a)
    later = (kept - kept_before, fanned - fanned_before, repaired - repaired_before)
    await close_all([pusher, follower])

    late = {seq_num: round(follower.received_at[seq_num] - at, 3) for seq_num, at in acked_at.items()}
    observe("s from the ack to the follower, by seqNum", late)
    observe("pushed at once after the follow: kept off Redis, remote fan-outs, repairs", at_once)
    observe("pushed after the notice: kept off Redis, remote fan-outs, repairs", later)

    assert follower.violations == [] and follower.seq_nums() == list(range(1, total + 1))
    # Right after the follow: every push the first process did not keep reached the follower's process in a
    # broadcast of its own; those it kept came from storage (its head nudge), and nothing else did.
    kept_at_once, fanned_at_once, repaired_at_once = at_once
    assert fanned_at_once == FOLLOWED_PUSHES - kept_at_once, f"(kept, fanned out, repaired): {at_once}"
    assert (repaired_at_once > 0) == (kept_at_once > 0), f"(kept, fanned out, repaired): {at_once}"
    # Once the notice was heard: every push came by broadcast (at most one kept, repaired from storage at most
    # once), so a first process that kept the store off Redis, or stopped broadcasting, fails here.
    kept_later, fanned_later, repaired_later = later
    assert kept_later <= 1, "pushes followed in another process were kept off Redis"
    assert fanned_later == FOLLOWED_PUSHES - kept_later, f"pushes did not reach the other process by broadcast: {later}"
    assert repaired_later <= kept_later, (
        f"the other process caught up from storage: (kept, fanned out, repaired) {later}"
    )
