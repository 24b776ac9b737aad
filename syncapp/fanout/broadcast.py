"""Messages to every socket of a store, in every process.

A store's channel-layer group is the Durable Object analogue. Anything that
changes a store — a push, an admin reset from a socket, the Django admin or a
management command — announces it here; each process's hub (``syncapp.fanout.hub``)
hands the messages to its sockets.
"""

import asyncio
import time

from channels.layers import get_channel_layer

from . import hub, layer_redis
from .messages import EVENTS, RESET, group_name


async def announce_events(
    store_id, first, last, request_id, v03_frames, v04_pages, origin_socket=None, committed_at=None
):
    """Events ``first``..``last`` were committed, by the push ``request_id`` (of the socket ``origin_socket``).

    ``v03_frames`` are their 0.3 PullRes frames and ``v04_pages`` their 0.4 PullResponses
    (JSON text), encoded once for all sockets of both protocol generations. ``committed_at``
    (``time.time()`` when the commit returned) is what each process's fan-out latency is measured from.
    """
    await _publish(
        store_id,
        {
            "type": EVENTS,
            "first": first,
            "last": last,
            "request_id": request_id,
            "v03_frames": v03_frames,
            "v04_pages": v04_pages,
            "origin_socket": origin_socket,
            # Wall-clock time, comparable across the processes of one machine (or NTP-synced machines).
            "committed_at": committed_at or time.time(),
        },
    )


async def announce_reset(store_id, origin=None):
    """The store was reset or deleted: its sockets (except the ``origin`` socket) must reconnect."""
    await _publish(store_id, {"type": RESET, "origin_socket": origin})


async def _publish(store_id, message):
    process_hub = hub.existing_hub()
    if process_hub is not None:
        await process_hub.publish(store_id, message)
    else:
        # Outside a server (the Django admin, a management command): no local sockets to serve. Bounded as
        # every wait on Redis is (the layer's connections may have no socket timeout).
        async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
            await get_channel_layer().group_send(group_name(store_id), {**message, "store_id": store_id})
