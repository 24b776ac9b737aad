"""A busy event loop is no outage of the channel layer (``syncapp.fanout.looplag``).

A burst of new stores kept the event loop of each daphne process busy for seconds at a time: the answers of a
healthy Redis waited unread past the hub's bound, and each process logged "channel layer unreachable" and
counted an outage, about 38 times per burst. Here the loop is blocked by callbacks longer than the bound while
the hub watches a real Redis and sends through it: no outage. A Redis that does not answer is still one, within
the bound once the loop runs on time again.
"""

import asyncio
import time

import prometheus_client
import pytest
from channels.layers import channel_layers

from livesync_project.settings import redis_channel_layer
from syncapp.fanout import hub as hub_module
from syncapp.fanout import layer_redis, looplag
from tests.support.proxy import TcpProxy
from tests.support.services import REDIS_URL, require_redis

# The bound of every wait on Redis in these tests, and how long each blocking callback holds the loop.
BOUND_SECONDS = 0.3
BLOCK_SECONDS = 0.4
BUSY_SECONDS = 8.0


class Recorder:
    def __init__(self):
        self.messages = []

    async def offer(self, message):
        self.messages.append(message)


def unavailable():
    return prometheus_client.REGISTRY.get_sample_value("livesync_unavailable_total", {"service": "channel_layer"}) or 0


def behind():
    return prometheus_client.REGISTRY.get_sample_value("livesync_event_loop_behind_seconds_total") or 0


def logged(caplog, text):
    return sum(text in record.getMessage() for record in caplog.records)


def keep_busy(seconds, block=BLOCK_SECONDS):
    """From now on for ``seconds``, a callback that blocks the event loop for ``block`` seconds runs again at
    each of its turns: a loop with work for every turn, as in a burst. Returns when that ends
    (``time.monotonic()``)."""
    loop = asyncio.get_running_loop()
    until = time.monotonic() + seconds

    def block_once():
        time.sleep(block)
        if time.monotonic() < until:
            loop.call_soon(block_once)

    loop.call_soon(block_once)
    return until


async def after(busy_until):
    """Once the last blocking callback, started before ``busy_until``, has returned."""
    await asyncio.sleep(max(0.0, busy_until - time.monotonic()) + BLOCK_SECONDS)


@pytest.fixture
def redis_hub(settings, monkeypatch):
    """A hub on channels_redis's pub/sub layer (the example project's) of the real Redis, behind a proxy the test
    can stall; every wait on Redis bounded by BOUND_SECONDS."""
    require_redis()
    monkeypatch.setattr(layer_redis, "TIMEOUT_SECONDS", BOUND_SECONDS)
    with TcpProxy.for_url(REDIS_URL) as proxy:
        settings.CHANNEL_LAYERS = {"default": redis_channel_layer(proxy.rewrite(REDIS_URL), "pubsub")}
        settings.LIVESYNC = {"HEAD_CHECK_INTERVAL": 3600}
        channel_layers.backends.clear()
        yield hub_module.Hub(), proxy
    channel_layers.backends.clear()


async def test_a_loop_blocked_longer_than_the_bound_is_no_outage_of_a_healthy_redis(redis_hub, caplog, store_id):
    hub, _ = redis_hub
    member = Recorder()
    await hub.join(store_id, member)
    outages_before, behind_before = unavailable(), behind()
    try:
        busy_until, published = keep_busy(BUSY_SECONDS), 0
        # Each watch asks Redis twice (syncapp.fanout.hosts.twice), and each try spans several blocks: several
        # watches fit.
        while time.monotonic() < busy_until:
            await hub.hosts.watch()
            published += 1
            await hub.publish(store_id, {"type": "livesync.events", "first": published, "last": published})
        await after(busy_until)
        await hub.hosts.watch()
        assert behind() - behind_before > BUSY_SECONDS / 2, "the test did not keep the event loop busy"
        assert logged(caplog, "channel layer unreachable") == 0
        assert unavailable() == outages_before
        assert not any(shard.down for shard in hub.shards)
        assert [message["last"] for message in member.messages] == list(range(1, published + 1))
    finally:
        await hub.stop()


async def test_a_silent_redis_is_still_an_outage_within_the_bound(redis_hub, caplog, store_id):
    hub, proxy = redis_hub
    await hub.join(store_id, Recorder())
    outages_before = unavailable()
    try:
        proxy.stall()
        started = time.monotonic()
        await hub.hosts.watch()
        # Two tries (see syncapp.fanout.hosts.twice), each bounded.
        assert time.monotonic() - started < 2 * BOUND_SECONDS + 1.0
        assert logged(caplog, "channel layer unreachable") == 1
        assert unavailable() - outages_before == 1
    finally:
        proxy.restore()
        await hub.stop()


async def test_a_bound_counts_only_the_time_the_loop_ran_on_time():
    """A wait that ends while the loop is blocked is not failed for it; one that does not end fails once the
    loop has run on time for the bound."""
    loop = asyncio.get_running_loop()
    answered = loop.create_future()
    loop.call_later(0.05, answered.set_result, "answer")
    busy_until = keep_busy(1.5)
    async with looplag.timeout(BOUND_SECONDS):
        assert await answered == "answer"

    await after(busy_until)
    keep_busy(1.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with looplag.timeout(BOUND_SECONDS):
            await asyncio.sleep(3600)
    waited = time.monotonic() - started
    assert 1.5 <= waited < 1.5 + BLOCK_SECONDS + BOUND_SECONDS + 1.0, waited

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with looplag.timeout(BOUND_SECONDS):
            await asyncio.sleep(3600)
    assert BOUND_SECONDS <= time.monotonic() - started < BOUND_SECONDS + 0.5
