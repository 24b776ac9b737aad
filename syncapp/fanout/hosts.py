"""The channel layer's Redis hosts as a hub sees them, its watch over them, and calls to them: each tried
twice, each bounded in the time the event loop was there to read the answer (``syncapp.fanout.looplag``).

channels_redis keeps each group on one of the layer's Redis hosts, chosen by
a hash of its name. A host that restarts (a crash, a Sentinel failover) has
forgotten who is in its groups, and a process whose own channel lives on
another host never hears of it: its receive goes on working. So each hub asks
every host for its ``run_id`` once per head check (``Watch``, on a task of
its own, so that head checks never wait for Redis). A host that does not
answer is down: logged and counted once, and its stores' messages are
dropped until it returns. "Does not answer" is judged in the time the event
loop was there to read the answer (``syncapp.fanout.looplag``): a loop too busy to
read it in time is no outage of Redis. Once it answers again, or answers
with a new run_id, the hub joins its groups there again, and only then logs that
broadcasts resumed. A failed call to the layer only wakes the watch early:
the hosts' answers, not the call, say which host is down, because a call may
fail through another host than its group's (the core layer's ``group_send``
writes to the host of each member's channel).
"""

import asyncio
import logging

from .. import conf, metrics
from . import layer_redis, looplag

logger = logging.getLogger("syncapp")


class Shard:
    """One Redis host of the channel layer, as this process's hub last saw it (see ``Watch``)."""

    def __init__(self, index, name):
        self.index = index
        self.name = name
        # The run_id the host last answered with (None: not asked yet).
        self.run_id = None
        # Whether the host's outage was logged and counted, and its return not yet.
        self.down = False
        # Whether this hub's groups on the host are in place: not after an outage, a restart or a failed join.
        self.joined = True


class Watch:
    """A hub's watch over its hosts: ``watch()`` asks each for its run_id, and joins the hub's groups again
    (``rejoin(shard)``) on those back from an outage or a restart.

    ``forget_followers()`` is called whenever a host is lost: Redis may have
    forgotten the hub's subscriptions, so no store's events are kept off it
    until the hub hears its own follow notice again (``syncapp.fanout.followers``).
    """

    def __init__(self, shards, rejoin, forget_followers):
        self.shards = shards
        self._rejoin = rejoin
        self._forget_followers = forget_followers
        # One watch at a time.
        self._watching = asyncio.Lock()
        # Set to watch the hosts now rather than at the next head check (a call to the layer failed).
        self.now = asyncio.Event()

    async def watch(self):
        """Ask every host for its run_id; rejoin the groups of those back from an outage or a restart."""
        async with self._watching:
            await asyncio.gather(*(self._watch_shard(shard) for shard in self.shards))

    async def _watch_shard(self, shard):
        try:
            run_id = await twice(layer_redis.run_id, shard.index)
        except Exception as exc:  # noqa: BLE001 - any failure to answer means an outage
            unless_cancelled()
            self.lost(shard, exc)
            return
        if shard.run_id not in (None, run_id):
            self.lost(shard, "it restarted since the last check, forgetting its groups")
        shard.run_id = run_id
        if shard.joined:
            return
        try:
            await self._rejoin(shard)
        except Exception:  # noqa: BLE001 - tried again at the next watch; an outage was logged once
            unless_cancelled()
            logger.debug("could not join the groups on %s again", shard.name, exc_info=True)
            return
        shard.joined = True
        if shard.down:
            shard.down = False
            logger.warning("channel layer reachable again at %s: broadcasts resumed", shard.name)

    def lost(self, shard, reason):
        """Host ``shard`` did not answer, or restarted: its groups are to be joined again once it answers."""
        shard.joined = False
        self._forget_followers()
        if shard.down:
            return
        shard.down = True
        metrics.UNAVAILABLE.labels("channel_layer").inc()
        logger.error(
            "channel layer unreachable at %s (%s): sockets of its stores catch up from the database every %ss "
            "until it returns",
            shard.name,
            reason,
            conf.get("HEAD_CHECK_INTERVAL"),
        )


async def twice(call, *args, bounded=True):
    """``await call(*args)``, tried once more at once if it fails; each try ``bounded`` in time.

    A Redis outage leaves dead connections in the client's pool; the first use
    of each after Redis returns fails (and discards it). That is no new outage,
    and the message it carried must not be lost. A Redis that stops answering
    without closing its connections (a network that drops packets) fails the
    call after ``layer_redis.TIMEOUT_SECONDS``, as an outage; time the event
    loop itself ran behind does not count (``syncapp.fanout.looplag``).
    """
    timeout = layer_redis.TIMEOUT_SECONDS if bounded else None
    try:
        async with looplag.timeout(timeout):
            return await call(*args)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the second attempt's failure is the one that counts
        unless_cancelled()
        async with looplag.timeout(timeout):
            return await call(*args)


def unless_cancelled():
    """Raise CancelledError if the running task was cancelled but is still running.

    A channels_redis call cancelled in the middle of a read may raise a
    connection error instead of CancelledError: retrying then, or sleeping
    after the "outage", would block a task that was told to stop for good.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def unbounded_queue(layer, channel_name):
    """The pub/sub layer's queue of ``channel_name`` in this event loop, or None for a layer that bounds its own."""
    loop_layer = getattr(layer, "_get_layer", None)
    if not layer_redis.is_pubsub_layer(layer) or loop_layer is None:
        return None
    return getattr(loop_layer(), "channels", {}).get(channel_name)
