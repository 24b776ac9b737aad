"""A store followed in one process only: its pushes stay off Redis, until a socket in another process follows it.

Two real daphne processes on PostgreSQL + Redis. While the store's sockets
all sit in the first process, its hub sends their events through Redis no
more (``syncapp.followers``). A socket of the store in the second process
then gets every later event as it is committed: the events kept before the
second process's follow notice arrived as a head nudge, the later ones
through Redis, none from a head check a second later.
"""

import asyncio

import pytest

from tests.faults.test_metrics import TOKEN, scrape, value
from tests.support.v03_socket import close_all, make_batch, open_sockets

pytestmark = pytest.mark.faults

WARM_UP_PUSHES_AT_MOST = 250
ALONE_PUSHES = 20
FOLLOWED_PUSHES = 10
# Far below the head check's 1 to 2 s (HEAD_CHECK_INTERVAL 1 s), far above a trip through Redis.
PROMPT_SECONDS = 0.5
# Far above a follow notice's trip through Redis, far below the head check's interval.
NOTICE_SECONDS = 0.2


def kept_local(node):
    return value(scrape(node)[1], "livesync_broadcasts_kept_local_total")


async def test_pushes_stay_off_redis_until_another_process_follows_and_then_reach_it_at_once(nodes, store_id):
    a, b = nodes(2, settings={"LIVESYNC_METRICS_TOKEN": TOKEN})
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
    for _ in range(FOLLOWED_PUSHES):
        outcome = await push()
        acked_at[pushed] = outcome.answered_at
    await asyncio.sleep(NOTICE_SECONDS)
    kept_before = kept_local(a)
    for _ in range(FOLLOWED_PUSHES):
        outcome = await push()
        acked_at[pushed] = outcome.answered_at
    total = pushed
    assert await follower.wait_for_cursor(total, 10), f"the follower stopped at e{follower.cursor} of e{total}"
    await close_all([pusher, follower])

    assert follower.violations == [] and follower.seq_nums() == list(range(1, total + 1))
    late = {seq_num: round(follower.received_at[seq_num] - at, 3) for seq_num, at in acked_at.items()}
    assert max(late.values()) < PROMPT_SECONDS, f"events reached the other process late (s after the ack): {late}"
    assert kept_local(a) - kept_before <= 1, "pushes followed in another process were kept off Redis"
