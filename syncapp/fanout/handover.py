"""Events committed in a process that serves no /metrics (``manage.py livesync_commit``, a worker, a shell),
counted on the server processes' /metrics: such a process hands its counts over through Redis, and the next
scrape of any server process takes them into its own counter, so each is counted once, where a scrape sees it.
"""

import functools
import logging

from django.db import transaction

from .. import conf, metrics
from . import layer_redis, looplag

logger = logging.getLogger("syncapp")

# Events committed in processes that serve no /metrics, per origin, waiting in Redis for a server process's scrape
# (under the channel layer's prefix: ``layer_redis.key``).
COMMITTED_ELSEWHERE = "events_committed"

# Whether this process has served /metrics: one that has counts what it commits itself.
_scraped = False


def count_committed(origin, count, database):
    """``count`` events of ``origin`` (the Python API, an import: not a client's push) committed by this process
    in a transaction on ``database``: counted once that commits, and not at all if it rolls back.

    A process that has served /metrics counts them itself. One that has not (a command, a worker, a shell),
    with Redis as the channel layer and the endpoint on, adds them in Redis for the next scrape of a server
    process to take (``take_committed_elsewhere``); without Redis, or when Redis fails, it counts them itself.
    """
    if count:
        transaction.on_commit(functools.partial(_count_committed, origin, count), using=database)


def _count_committed(origin, count):
    if not _scraped and _hands_over():
        try:
            layer_redis.blocking_client().hincrby(layer_redis.key(COMMITTED_ELSEWHERE), origin, count)
            return
        except Exception:  # noqa: BLE001 - counted here instead, where no scrape may see it
            logger.debug("could not hand over %s committed events to the server processes", count, exc_info=True)
    metrics.EVENTS_COMMITTED.labels(origin).inc(count)


def _hands_over():
    """Whether events committed in processes that serve no /metrics reach those that do, through Redis."""
    configured = conf.get("METRICS_TOKEN") is not None or conf.get("METRICS_ALLOWED_ADDRESSES") is not None
    return (
        metrics.installed()
        and conf.get("METRICS")
        and configured
        and layer_redis.is_redis()
        and layer_redis.installed()
    )


async def take_committed_elsewhere():
    """Add the events other processes handed over to this process's counter, and remove them from Redis:
    called by a scrape of /metrics, after which this process counts what it commits itself."""
    global _scraped
    _scraped = True
    if not _hands_over():
        return
    try:
        async with looplag.timeout(layer_redis.TIMEOUT_SECONDS):
            async with layer_redis.client(0).pipeline(transaction=True) as pipeline:
                key = layer_redis.key(COMMITTED_ELSEWHERE)
                taken, _ = await pipeline.hgetall(key).delete(key).execute()
    except Exception:  # noqa: BLE001 - Redis down: they wait there for the next scrape
        logger.debug("could not take the events committed in other processes", exc_info=True)
        return
    for origin, count in taken.items():
        metrics.EVENTS_COMMITTED.labels(origin.decode()).inc(int(count))
