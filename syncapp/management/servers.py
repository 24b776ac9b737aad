"""Telling a store's connected sockets, in the server processes, that its history changed."""

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from syncapp.fanout import broadcast


def disconnect_sockets(store_id, stdout, style):
    """Close the store's sockets (they reconnect), and warn when the channel layer cannot reach a server.

    An in-memory channel layer lives inside one process: a command's announcement
    never reaches the sockets of a running server.
    """
    async_to_sync(broadcast.announce_reset)(store_id)
    warn_if_servers_unreached(stdout, style)


def warn_if_servers_unreached(stdout, style):
    """Say so when a command's announcements cannot reach a running server (an in-memory channel layer)."""
    if isinstance(get_channel_layer(), InMemoryChannelLayer):
        stdout.write(
            style.WARNING(
                "The channel layer is in-memory, so sockets connected to a running server were not told; "
                "restart the server (or configure REDIS_URL) so clients reconnect."
            )
        )
