"""Connected sockets per store across server processes, for the admin, when the channel layer is Redis.

Each process's hub writes its own counts (``{storeId: sockets}``) under a
Redis key of its own at every head check, and the key expires PRESENCE_TTL
seconds after the last write: a process that dies, even by SIGKILL, stops
being counted within that time. The admin sums every process's key for the
stores of its page: one SCAN and one pipelined HMGET per process.

With several Redis hosts, every process writes its key on every host, and
the admin reads every host that answers: a host that is down, or restarted
and not yet written to again, hides no process. The counts are a few bytes
per store and process, so the copies cost next to nothing.

With the in-memory layer there is one process, and its hub knows the count.
"""

import asyncio

from .. import conf
from . import layer_redis


def key_prefix():
    """Where each process's counts are kept: one key per process under this prefix."""
    return layer_redis.key("sockets:")


def ttl():
    """Seconds a process's counts outlive its last write: three head checks, and at least 5 s."""
    return max(5, round(3 * conf.get("HEAD_CHECK_INTERVAL")))


def available():
    """Whether the default channel layer is channels_redis (so that counts can be shared through its Redis).

    Not when channels_redis is missing: that layer then cannot run (``manage.py check`` says so, syncapp.E012),
    and the admin shows what this process's hub knows instead.
    """
    return layer_redis.is_redis() and layer_redis.installed()


async def publish(process_id, counts):
    """Record this process's ``{store_id: sockets}`` on every host (an empty one removes its key at once).

    Raises the first failure once every host was tried: the caller writes again at its next head check.
    """
    results = await asyncio.gather(
        *(_publish_on(index, process_id, counts) for index in range(len(layer_redis.hosts()))),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _publish_on(index, process_id, counts):
    key = key_prefix() + process_id
    pipeline = layer_redis.client(index).pipeline(transaction=True)
    async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS), pipeline:
        pipeline.delete(key)
        if counts:
            pipeline.hset(key, mapping=counts)
            pipeline.expire(key, ttl())
        await pipeline.execute()


async def socket_counts(store_ids):
    """Sockets per store of ``store_ids`` over every live process, in their order.

    Raises only if no host answers.
    """
    results = await asyncio.gather(
        *(_counts_on(index, store_ids) for index in range(len(layer_redis.hosts()))), return_exceptions=True
    )
    answered = [result for result in results if not isinstance(result, BaseException)]
    if not answered:
        raise results[0]
    # Each process's counts once, as the first host that has them recorded them.
    per_process = {}
    for counts_by_key in answered:
        for key, counts in counts_by_key.items():
            per_process.setdefault(key, counts)
    return [sum(int(counts[index] or 0) for counts in per_process.values()) for index in range(len(store_ids))]


async def _counts_on(index, store_ids):
    """``{process key: [sockets of each store or None]}`` as host ``index`` holds them."""
    async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
        client = layer_redis.client(index)
        keys = [key async for key in client.scan_iter(match=key_prefix() + "*", count=1000)]
        if not keys or not store_ids:
            return {key: [None] * len(store_ids) for key in keys}
        async with client.pipeline(transaction=False) as pipeline:
            for key in keys:
                pipeline.hmget(key, store_ids)
            return dict(zip(keys, await pipeline.execute(), strict=True))
