"""redis-py clients on the default channels_redis layer's Redis, for what livesync sends there itself.

The admin's socket counts (``syncapp.presence``) and the hub's pipelined
broadcasts (``syncapp.publisher``) go to the Redis that ``CHANNEL_LAYERS``
already names, so a deployment configures Redis once. They use the layer's
first host. Connections belong to one event loop (tests run several), so
there is a pool per loop.

Every wait of livesync's on Redis, through these clients or through the
layer, is bounded by TIMEOUT_SECONDS: a Redis that stops answering without
closing its connections then fails a call as one that went away does, and
the layer's hosts need no ``socket_timeout`` (see the README's "Production").
"""

import asyncio
import weakref

from channels.layers import DEFAULT_CHANNEL_LAYER
from channels_redis.utils import create_pool, decode_hosts
from django.conf import settings
from redis import asyncio as aioredis

# How long one call to Redis (a subscribe, a publish, a probe, a read of socket counts) may take before it
# counts as failed. Waiting for the next message on a subscription is not bounded: that is what it does.
TIMEOUT_SECONDS = 10

CORE_LAYER = "channels_redis.core.RedisChannelLayer"
PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"

_pools = weakref.WeakKeyDictionary()


def default_layer():
    """The default channel layer's entry in ``CHANNEL_LAYERS`` (empty when there is none)."""
    return (getattr(settings, "CHANNEL_LAYERS", None) or {}).get(DEFAULT_CHANNEL_LAYER, {})


def layer_config():
    """The ``CONFIG`` of the default channel layer."""
    return default_layer().get("CONFIG", {})


def hosts():
    """The default layer's hosts, as channels_redis reads them (localhost:6379 when none are given)."""
    return decode_hosts(layer_config().get("hosts"))


def client():
    """A client on the default layer's first host, from this event loop's pool."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = create_pool(hosts()[0])
    return aioredis.Redis(connection_pool=pool)
