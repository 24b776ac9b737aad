"""Store messages sent to their groups in Redis pipelines (``syncapp.fanout.publisher``), received by the real layer.

The pipelined publisher writes channels_redis's pub/sub wire format itself (its group channel names, its
serializer, and with several hosts the host of each group), so these tests receive through
``RedisPubSubChannelLayer`` what it published to the real Redis: a channels_redis that named, encoded or placed
its messages otherwise would fail them.
"""

import asyncio

import pytest
from channels.layers import channel_layers, get_channel_layer

from livesync_project.settings import redis_channel_layer
from syncapp.fanout import layer_redis, publisher
from tests.support.redis_servers import RedisServer
from tests.support.services import REDIS_URL, require_redis

pytestmark = pytest.mark.protocol


@pytest.fixture
def layer_settings(settings):
    """Sets the default channel layer to ``config`` (closing the layers made before); returns that layer."""

    def use(config):
        settings.CHANNEL_LAYERS = {"default": config}
        channel_layers.backends.clear()
        return get_channel_layer()

    yield use
    channel_layers.backends.clear()


def pubsub_config(**extra_config):
    config = redis_channel_layer(REDIS_URL, "pubsub")
    return {**config, "CONFIG": {**config["CONFIG"], **extra_config}}


@pytest.mark.parametrize("prefix", [None, "myapp"])
async def test_a_pipeline_reaches_the_groups_subscribers_in_order_as_group_send_would(layer_settings, prefix):
    require_redis()
    layer = layer_settings(pubsub_config(**({"prefix": prefix} if prefix else {})))
    sender = publisher.for_layer(layer)
    assert isinstance(sender, publisher.PipelinedPublisher)
    channel = await layer.new_channel()
    await layer.group_add("livesync.store.a", channel)
    await layer.group_add("livesync.store.b", channel)
    sent = [
        (
            "livesync.store.a" if index % 3 else "livesync.store.b",
            {"type": "livesync.events", "first": index, "last": index, "frames": ["é\x01'\"", b"\x00raw"]},
        )
        for index in range(30)
    ]
    try:
        await sender.publish(sent, 0)
        received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in sent]
        assert received == [message for _, message in sent]
    finally:
        await layer.flush()


async def test_a_group_without_subscribers_is_skipped_by_its_messages(layer_settings):
    require_redis()
    layer = layer_settings(pubsub_config())
    channel = await layer.new_channel()
    await layer.group_add("livesync.store.followed", channel)
    try:
        await publisher.for_layer(layer).publish(
            [
                ("livesync.store.unfollowed", {"type": "livesync.events", "last": 1}),
                ("livesync.store.followed", {"type": "livesync.events", "last": 2}),
            ],
            0,
        )
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "livesync.events", "last": 2}
    finally:
        await layer.flush()


async def test_on_two_hosts_each_group_is_published_on_the_host_the_layer_subscribes_it_on(layer_settings, tmp_path):
    """Pub/sub channels are one namespace per server, so only two servers tell a misplaced publish: it reaches
    nobody, and Redis answers that it reached no subscriber."""
    with RedisServer(tmp_path) as first, RedisServer(tmp_path) as second:
        layer = layer_settings(redis_channel_layer([first.url, second.url], "pubsub"))
        sender = publisher.for_layer(layer)
        assert isinstance(sender, publisher.PipelinedPublisher)
        groups = {}
        for number in range(100):
            groups.setdefault(layer_redis.group_shard(f"livesync.store.{number}"), f"livesync.store.{number}")
        assert sorted(groups) == [0, 1], "no group of a hundred hashed to one of the hosts"
        channel = await layer.new_channel()
        for group in groups.values():
            await layer.group_add(group, channel)
        try:
            for shard, group in sorted(groups.items()):
                message = {"type": "livesync.events", "last": shard}
                assert await sender.publish([(group, message)], shard) == [1]
                assert await asyncio.wait_for(layer.receive(channel), 5) == message
        finally:
            await layer.flush()


@pytest.mark.parametrize(
    "config",
    [{"BACKEND": "channels.layers.InMemoryChannelLayer"}, redis_channel_layer(REDIS_URL, "core")],
    ids=["in-memory", "core"],
)
def test_layers_it_cannot_pipeline_send_one_message_at_a_time_through_the_layer(layer_settings, config):
    assert isinstance(publisher.for_layer(layer_settings(config)), publisher.LayerPublisher)


async def test_one_message_at_a_time_reaches_the_group_in_order(layer_settings):
    layer = layer_settings({"BACKEND": "channels.layers.InMemoryChannelLayer"})
    channel = await layer.new_channel()
    await layer.group_add("livesync.store.a", channel)
    sent = [{"type": "livesync.events", "last": index} for index in range(5)]
    await publisher.for_layer(layer).publish([("livesync.store.a", message) for message in sent], None)
    assert [await layer.receive(channel) for _ in sent] == sent
