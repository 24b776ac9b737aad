"""redis-py clients on the default channels_redis layer's Redis hosts, and where that layer puts a group.

The admin's socket counts (``syncapp.fanout.presence``), the hub's pipelined
broadcasts (``syncapp.fanout.publisher``) and its watch over the hosts
(``syncapp.fanout.hosts.Watch``) go to the Redis that ``CHANNEL_LAYERS`` already names, so a
deployment configures Redis once. A host is whatever channels_redis takes: a
URL, a dict of connection options, or a Sentinel-managed master
(``{"sentinels": [...], "master_name": ...}``), and ``create_pool`` is
channels_redis's own, so both reach the same server. Connections belong to one
event loop (tests run several), so there is a pool per loop and host.

With several hosts, channels_redis keeps each group on one of them, chosen by
hashing its name (``group_shard``); livesync publishes a group's messages on
that host, as the layer would.

Every wait of livesync's on Redis, through these clients or through the
layer, is bounded by TIMEOUT_SECONDS: a Redis that stops answering without
closing its connections then fails a call as one that went away does, and
the layer's hosts need no ``socket_timeout`` (see the docs' Run in production page).
The hub's calls, whose failure it reports as an outage, count only the time
the event loop was there to read an answer (``syncapp.fanout.looplag``).

channels_redis (and redis-py) come with the ``[redis]`` extra: one process on
the in-memory layer runs without them, so they are imported only here, in the
functions that need them, and only a Redis layer calls those.
"""

import asyncio
import functools
import weakref
from urllib.parse import urlsplit

from channels import DEFAULT_CHANNEL_LAYER
from django.conf import settings

from . import looplag

# How long one call to Redis (a subscribe, a publish, a run_id, a read of socket counts) may take before it
# counts as failed. Waiting for the next message on a subscription is not bounded: that is what it does.
TIMEOUT_SECONDS = 10

CORE_LAYER = "channels_redis.core.RedisChannelLayer"
PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"
REDIS_LAYERS = (CORE_LAYER, PUBSUB_LAYER)

# What a project whose channel layer is Redis must install (``manage.py check`` says so: syncapp.E012).
INSTALL = 'pip install "django-livestore-sync[redis]"'

# The channels_redis layers' default prefix of their keys and channels.
DEFAULT_PREFIX = "asgi"

# loop -> {host index: connection pool}
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, object]] = weakref.WeakKeyDictionary()
# (host index, host) -> blocking client
_blocking_clients: dict[tuple[int, str], object] = {}


def default_layer():
    """The default channel layer's entry in ``CHANNEL_LAYERS`` (empty when there is none)."""
    return (getattr(settings, "CHANNEL_LAYERS", None) or {}).get(DEFAULT_CHANNEL_LAYER, {})


def layer_config():
    """The ``CONFIG`` of the default channel layer."""
    return default_layer().get("CONFIG", {})


def is_redis():
    """Whether the default channel layer is one of channels_redis's."""
    return default_layer().get("BACKEND") in REDIS_LAYERS


@functools.cache
def _layer_classes():
    """channels_redis's ``(RedisChannelLayer, RedisPubSubChannelLayer)``, or ``()`` when it is not installed."""
    try:
        from channels_redis.core import RedisChannelLayer
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:
        return ()
    return RedisChannelLayer, RedisPubSubChannelLayer


def installed():
    """Whether channels_redis (the ``[redis]`` extra) can be imported."""
    return bool(_layer_classes())


def is_redis_layer(layer):
    """Whether ``layer`` is one of channels_redis's layers (never, without channels_redis)."""
    return isinstance(layer, _layer_classes())


def is_pubsub_layer(layer):
    """Whether ``layer`` is channels_redis's pub/sub layer."""
    return isinstance(layer, _layer_classes()[1:])


def hosts():
    """The default layer's hosts, as channels_redis reads them (localhost:6379 when none are given)."""
    from channels_redis.utils import decode_hosts

    return decode_hosts(layer_config().get("hosts"))


def describe(host):
    """A host as logs name it: its address without credentials, or its Sentinel master's name."""
    if "master_name" in host:
        return f"Sentinel master {host['master_name']!r}"
    if "address" in host:
        parts = urlsplit(host["address"])
        return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path
    return f"{host.get('host', 'localhost')}:{host.get('port', 6379)}"


def group_channel(group):
    """The Redis channel the pub/sub layer publishes ``group``'s messages on."""
    return f"{layer_config().get('prefix', DEFAULT_PREFIX)}__group__{group}"


def key(name):
    """The Redis key of livesync's own ``name``, under the layer's ``prefix``: deployments that share a Redis
    with prefixes of their own (as channels_redis allows) see none of each other's counts."""
    return f"{layer_config().get('prefix', DEFAULT_PREFIX)}:livesync:{name}"


def group_shard(group):
    """The index of the host the default layer keeps ``group`` on.

    channels_redis hashes the group's name over the hosts: the core layer the
    group itself (``RedisChannelLayer.consistent_hash``), the pub/sub layer its
    Redis channel (``RedisPubSubLoopLayer._get_shard``).
    """
    from channels_redis.utils import _consistent_hash

    name = group_channel(group) if default_layer().get("BACKEND") == PUBSUB_LAYER else group
    return _consistent_hash(name, len(hosts()))


def client(index=0):
    """A client on the default layer's host ``index``, from this event loop's pool."""
    from channels_redis.utils import create_pool
    from redis import asyncio as aioredis

    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    pool = pools.get(index)
    if pool is None:
        pool = pools[index] = create_pool(hosts()[index])
    return aioredis.Redis(connection_pool=pool)


def blocking_client(index=0):
    """A blocking redis-py client on the default layer's host ``index``, for code outside an event loop; every
    call bounded by TIMEOUT_SECONDS. One per host and process (a client's pool is thread-safe)."""
    host = hosts()[index]
    key = (index, repr(host))
    found = _blocking_clients.get(key)
    if found is None:
        found = _blocking_clients[key] = _blocking_client(dict(host))
    return found


def _blocking_client(host):
    """redis-py's blocking client on ``host`` as channels_redis describes it (see its ``create_pool``)."""
    import redis
    from redis.sentinel import Sentinel

    options = {"socket_timeout": TIMEOUT_SECONDS, "socket_connect_timeout": TIMEOUT_SECONDS}
    if "address" in host:
        return redis.Redis.from_url(host.pop("address"), **{**options, **host})
    if "master_name" in host:
        sentinel = Sentinel(host.pop("sentinels"), sentinel_kwargs=host.pop("sentinel_kwargs", None))
        return sentinel.master_for(host.pop("master_name"), **{**options, **host})
    return redis.Redis(**{**options, **host})


async def run_id(index):
    """Host ``index``'s ``run_id``: a new one means the server restarted (or a Sentinel promoted another)."""
    async with looplag.timeout(TIMEOUT_SECONDS):
        info = await client(index).info("server")
    return info["run_id"]
