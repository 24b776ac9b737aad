"""The store messages every process exchanges, and the channel-layer group of each store.

A leaf module: the hub (which delivers them), ``broadcast`` (which announces them) and the consumers (which
handle them) all import it, and it imports none of them.
"""

import hashlib
from functools import lru_cache

# Message types, dispatched to the consumers' livesync_events / livesync_reset / livesync_head.
EVENTS = "livesync.events"
RESET = "livesync.reset"
HEAD = "livesync.head"
# A hub follows a store from now on (``store_id``), or is listening for such notices (no ``store_id``); sent to
# every hub through FOLLOWS_GROUP, see ``syncapp.fanout.followers``.
FOLLOW = "livesync.follow"
FOLLOWS_GROUP = "livesync.follows"


@lru_cache(maxsize=4096)
def group_name(store_id):
    """The channel-layer group of a store (group names allow only a short ASCII alphabet)."""
    return "livesync.store." + hashlib.sha256(store_id.encode()).hexdigest()[:40]
