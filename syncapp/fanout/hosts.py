"""The channel layer's Redis hosts as a hub sees them, and calls to them: each tried twice, each bounded in the
time the event loop was there to read the answer (``syncapp.fanout.looplag``).
"""

import asyncio

from . import layer_redis, looplag


class Shard:
    """One Redis host of the channel layer, as this process's hub last saw it (see ``Hub._watch``)."""

    def __init__(self, index, name):
        self.index = index
        self.name = name
        # The run_id the host last answered with (None: not asked yet).
        self.run_id = None
        # Whether the host's outage was logged and counted, and its return not yet.
        self.down = False
        # Whether this hub's groups on the host are in place: not after an outage, a restart or a failed join.
        self.joined = True


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
