"""Messages to every socket of a store, in every process, through the channel layer.

A store's channel-layer group is the Durable Object analogue. Anything that
changes a store — a push, an admin reset from a socket, the Django admin or a
management command — announces it here; the consumers act on the messages.
"""

import hashlib

from channels.layers import get_channel_layer

# Message types, dispatched by Channels to SyncConsumer.livesync_events / livesync_reset.
EVENTS = "livesync.events"
RESET = "livesync.reset"


def group_name(store_id):
    """The channel-layer group of a store (group names allow only a short ASCII alphabet)."""
    return "livesync.store." + hashlib.sha256(store_id.encode()).hexdigest()[:40]


async def announce_events(store_id, frame, first, last, request_id):
    """Events ``first``..``last`` were committed; ``frame`` is their PullRes, encoded once for all sockets."""
    await get_channel_layer().group_send(
        group_name(store_id),
        {"type": EVENTS, "frame": frame, "first": first, "last": last, "request_id": request_id},
    )


async def announce_reset(store_id, origin=None):
    """The store was reset or deleted: its sockets (except ``origin``'s channel) must reconnect."""
    await get_channel_layer().group_send(group_name(store_id), {"type": RESET, "origin": origin})
