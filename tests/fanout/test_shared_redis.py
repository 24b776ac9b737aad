"""Deployments that share one Redis under channel-layer prefixes of their own (channels_redis's ``prefix``) keep
livesync's own keys apart too: the admin's socket counts and the events handed over to /metrics."""

import prometheus_client
import pytest
from channels.layers import channel_layers

from livesync_project.settings import redis_channel_layer
from syncapp.fanout import handover, presence
from tests.support.redis_servers import RedisServer, require_redis_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_redis(settings, tmp_path):
    """``switch(prefix)`` makes this process one of the deployments on one fresh Redis, by its layer's prefix."""
    require_redis_server()
    with RedisServer(tmp_path) as server:

        def switch(prefix):
            layer = redis_channel_layer(server.url, "pubsub")
            layer["CONFIG"]["prefix"] = prefix
            settings.CHANNEL_LAYERS = {"default": layer}
            channel_layers.backends.clear()

        yield switch
    channel_layers.backends.clear()


async def test_each_deployment_counts_only_its_own_sockets(shared_redis):
    shared_redis("blue")
    await presence.publish("process-a", {"s": 2})
    shared_redis("green")
    await presence.publish("process-b", {"s": 5})
    assert await presence.socket_counts(["s"]) == [5]
    shared_redis("blue")
    assert await presence.socket_counts(["s"]) == [2]


def committed(origin):
    return prometheus_client.REGISTRY.get_sample_value("livesync_events_committed_total", {"origin": origin}) or 0


async def test_events_committed_outside_the_servers_reach_only_their_own_deployments_metrics(
    shared_redis, settings, monkeypatch
):
    settings.LIVESYNC = {"METRICS_TOKEN": "a-token-long-enough-for-the-checks-0123"}
    monkeypatch.setattr(handover, "_scraped", False)
    shared_redis("blue")
    handover._count_committed("python", 3)
    before = committed("python")
    shared_redis("green")
    await handover.take_committed_elsewhere()
    assert committed("python") == before
    shared_redis("blue")
    await handover.take_committed_elsewhere()
    assert committed("python") == before + 3
