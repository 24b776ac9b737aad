"""Sending a process's store messages to their groups: in pipelines on channels_redis's pub/sub layer.

The hub sends every store message of its process from one task, in order
(``Hub._send_loop``). Through ``RedisPubSubChannelLayer.group_send`` each
message costs a round trip to Redis under the layer's lock, one after the
other: in the bench's 50-store run they fell 700 messages behind, so other
processes heard of pushes late. ``PipelinedPublisher`` sends all the
messages waiting for one host as one pipeline, one round trip for all of
them, on a connection of its own (``syncapp.fanout.layer_redis``).

It sends what the layer's own ``group_send`` sends: ``PUBLISH`` of
``layer.serialize(message)`` on the channel ``<prefix>__group__<group>``, on
the host the layer keeps the group on (``layer_redis.group_shard``; the hub
hands each host its own messages). That host's answer counts every
subscriber of the group, which ``syncapp.fanout.followers`` relies on. Every other
layer gets ``LayerPublisher``, one ``group_send`` per message.
``tests/fanout/test_publisher.py`` receives through the layer, on one host and on
two, what was published here, so a channels_redis that named, encoded or
placed its messages differently would fail it.
"""

from . import layer_redis


def for_layer(layer):
    """The publisher for ``layer``, the default channel layer."""
    if layer_redis.is_pubsub_layer(layer):
        return PipelinedPublisher(layer)
    return LayerPublisher(layer)


class LayerPublisher:
    """One ``group_send`` per message, in order."""

    # group_send does not say who received a message (see syncapp.fanout.followers).
    counts_receivers = False

    def __init__(self, layer):
        self.layer = layer

    async def publish(self, messages, shard=None):
        """Send ``(group, message)`` pairs; raises at the first failure (those before it were sent).

        ``shard`` is not needed: the layer places each group itself.
        """
        for group, message in messages:
            await self.layer.group_send(group, message)


class PipelinedPublisher:
    """``(group, message)`` pairs published to the host of their groups in one pipeline, in order."""

    counts_receivers = True

    def __init__(self, layer):
        self.layer = layer

    async def publish(self, messages, shard=0):
        """Publish all ``messages``, whose groups live on host ``shard``, in one round trip; returns how many
        subscribers each reached.

        Raises if Redis fails (some may have been published).
        """
        async with layer_redis.client(shard).pipeline(transaction=False) as pipeline:
            for group, message in messages:
                pipeline.publish(layer_redis.group_channel(group), self.layer.serialize(message))
            return await pipeline.execute()
