"""Connected sockets per store across server processes, for the admin, when the channel layer is Redis.

Each process's hub writes its own counts (``{storeId: sockets}``) under a
Redis key of its own at every head check, and the key expires PRESENCE_TTL
seconds after the last write: a process that dies, even by SIGKILL, stops
being counted within that time. The admin sums every process's key for the
stores of its page: one SCAN and one pipelined HMGET per process.

With the in-memory layer there is one process, and its hub knows the count.
"""

import asyncio

from . import conf, layer_redis

KEY_PREFIX = "livesync:sockets:"
REDIS_LAYERS = (layer_redis.CORE_LAYER, layer_redis.PUBSUB_LAYER)


def ttl():
    """Seconds a process's counts outlive its last write: three head checks, and at least 5 s."""
    return max(5, round(3 * conf.get("HEAD_CHECK_INTERVAL")))


def available():
    """Whether the default channel layer is channels_redis (so that counts can be shared through its Redis)."""
    return layer_redis.default_layer().get("BACKEND") in REDIS_LAYERS


async def publish(process_id, counts):
    """Record this process's ``{store_id: sockets}`` (an empty one removes its key at once)."""
    key = KEY_PREFIX + process_id
    pipeline = layer_redis.client().pipeline(transaction=True)
    async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS), pipeline:
        pipeline.delete(key)
        if counts:
            pipeline.hset(key, mapping=counts)
            pipeline.expire(key, ttl())
        await pipeline.execute()


async def socket_counts(store_ids):
    """Sockets per store of ``store_ids`` over every live process, in their order."""
    async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
        client = layer_redis.client()
        keys = [key async for key in client.scan_iter(match=KEY_PREFIX + "*", count=1000)]
        if not keys or not store_ids:
            return [0] * len(store_ids)
        async with client.pipeline(transaction=False) as pipeline:
            for key in keys:
                pipeline.hmget(key, store_ids)
            per_process = await pipeline.execute()
    return [sum(int(counts[index] or 0) for counts in per_process) for index in range(len(store_ids))]
