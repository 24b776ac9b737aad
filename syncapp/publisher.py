"""Sending a process's store messages to their groups: in pipelines on channels_redis's pub/sub layer.

The hub sends every store message of its process from one task, in order
(``Hub._send_loop``). Through ``RedisPubSubChannelLayer.group_send`` each
message costs a round trip to Redis under the layer's lock, one after the
other: in the bench's 50-store run they fell 700 messages behind, so other
processes heard of pushes late. ``PipelinedPublisher`` sends all the
messages waiting as one pipeline, one round trip for all of them, on a
connection of its own (``syncapp.layer_redis``).

It sends what the layer's own ``group_send`` sends: ``PUBLISH`` of
``layer.serialize(message)`` on the channel ``<prefix>__group__<group>``. It
does so only for a layer on one Redis host, because a sharded layer picks a
host per group and that choice is its own. Every other layer gets
``LayerPublisher``, one ``group_send`` per message.
``tests/test_publisher.py`` receives through the layer what was published
here, so a channels_redis that named or encoded its messages differently
would fail it.
"""

from channels_redis.pubsub import RedisPubSubChannelLayer

from . import layer_redis

# The channels_redis pub/sub layer's default channel-name prefix.
DEFAULT_PREFIX = "asgi"


def for_layer(layer):
    """The publisher for ``layer``, the default channel layer."""
    if isinstance(layer, RedisPubSubChannelLayer) and len(layer_redis.hosts()) == 1:
        return PipelinedPublisher(layer, layer_redis.layer_config().get("prefix", DEFAULT_PREFIX))
    return LayerPublisher(layer)


class LayerPublisher:
    """One ``group_send`` per message, in order."""

    # group_send does not say who received a message (see syncapp.followers).
    counts_receivers = False

    def __init__(self, layer):
        self.layer = layer

    async def publish(self, messages):
        """Send ``(group, message)`` pairs; raises at the first failure (those before it were sent)."""
        for group, message in messages:
            await self.layer.group_send(group, message)


class PipelinedPublisher:
    """``(group, message)`` pairs published to the layer's one Redis host in one pipeline, in order."""

    counts_receivers = True

    def __init__(self, layer, prefix):
        self.layer = layer
        self.prefix = prefix

    async def publish(self, messages):
        """Publish all ``messages`` in one round trip; returns how many subscribers each reached.

        Raises if Redis fails (some may have been published).
        """
        async with layer_redis.client().pipeline(transaction=False) as pipeline:
            for group, message in messages:
                pipeline.publish(f"{self.prefix}__group__{group}", self.layer.serialize(message))
            return await pipeline.execute()
