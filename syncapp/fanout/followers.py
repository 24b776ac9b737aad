"""Which stores no other process follows: the hub keeps those stores' pushes off Redis.

A store's sockets often all sit in the process its pushes reach: one daphne
process, or a user's one or two devices in a cluster. Every message the hub
published for such a store went to Redis only to come back to the hub and be
dropped as its own; on PostgreSQL + Redis that was a fifth of the event loop's
busy time in a profile of batch-1 pushes. Redis already counts who hears a
message: ``PUBLISH`` answers with the number of subscribers it reached. When
that number says no other process follows a store, the hub keeps the store's
next events to its own sockets, until another process says it follows the
store too.

That word is a follow notice, sent to every hub through one group
(``messages.FOLLOWS_GROUP``) after a hub subscribes to a store's group. A hub
that hears it publishes that store's events again, and first a head nudge for
the events it kept meanwhile, so that the new follower's sockets repair
themselves from storage at once rather than at the next head check.

A count above this process's own subscription always makes the hub publish
the store again. A count that would let it keep the store's events is
trusted only when nothing can hide a follower from it:

- not before the hub heard its own first notice back, because until then it
  could miss other processes' notices;
- for a store of this process's own sockets, not before one of its own
  messages, sent since its socket joined, came back through the store's group,
  because until then the one subscriber Redis counted may be another process
  rather than this one;
- not from a reply to a publish sent before a notice about the store was
  heard, nor for ``GRACE_SECONDS`` after one: the other process subscribed
  before sending it, but over another connection, so Redis may not have
  processed the subscription yet.

A subscription Redis has still not processed after the grace misses the
store's events until the next head check, as after any message the channel
layer loses. So does a follower whose notice was lost (the pub/sub layer
reconnects on its own and drops what was published meanwhile) or never sent
(a process of an older livesync during a rolling upgrade): once per head
check, the hub sends each store it kept events of a head nudge through Redis,
and that publish's count tells it about such a follower.
"""

import math
import time

from cachetools import LRUCache, TTLCache

from . import layer_redis

# Stores whose events this process keeps to itself, at most (those pushed to least recently are published again).
KEPT_STORES_LIMIT = 10_000
# How long after a follow notice the counts of that store's publishes are not trusted.
GRACE_SECONDS = 1.0
# How long a notice is remembered: longer than a publish may take (the hub tries twice, each try bounded).
NOTICE_MEMORY_SECONDS = 2 * layer_redis.TIMEOUT_SECONDS + GRACE_SECONDS
# Stores whose notice is remembered at once, at most: far more notices than any cluster sends in that time.
NOTICED_STORES_LIMIT = 100_000


class Followers:
    """One hub's knowledge of which stores no other process follows."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        # store_id -> the last event kept off Redis (0 while none was).
        self._kept = LRUCache(KEPT_STORES_LIMIT)
        # store_id -> the last event kept off Redis since the last head check.
        self._unannounced = {}
        # store_id -> when the last notice about it was heard.
        self._noticed_at = TTLCache(NOTICED_STORES_LIMIT, NOTICE_MEMORY_SECONDS, timer=clock)
        # Joins of this process's sockets to stores (the first socket of each), counted; the hub stamps the
        # count on each message it sends, so that an own message sent before a store's latest join proves nothing.
        self.joins = 0
        # store_id -> ``joins`` when this process's first socket of it joined.
        self._joined = {}
        # Stores of this process's sockets whose subscription Redis has proven by sending an own message back.
        self._heard_own = set()
        self._forgotten_at = -math.inf
        self.listening = False

    def keeps(self, store_id):
        """Whether ``store_id``'s events stay off the channel layer."""
        return store_id in self._kept

    def kept(self, store_id, last):
        """Events up to ``last`` of ``store_id`` were delivered here only."""
        self._kept[store_id] = self._unannounced[store_id] = max(last, self._kept[store_id])

    def unannounced(self):
        """``{store_id: last event}`` of the stores that kept events since the last call."""
        unannounced, self._unannounced = self._unannounced, {}
        return unannounced

    def sending(self):
        """Before a publish: when it was sent, for ``reached``."""
        return self._clock()

    def reached(self, store_id, receivers, sent_at, follows_here):
        """A publish of ``store_id``'s events or head, sent at ``sent_at``, reached ``receivers`` subscribers.

        ``follows_here``: this process has sockets of the store, so one of the
        subscribers should be its own. Returns the last event kept of a store
        that another process turns out to follow (0: none), to announce to it.
        """
        if receivers > (1 if follows_here else 0):
            self._unannounced.pop(store_id, None)
            return self._kept.pop(store_id, 0)
        if self._trusted(store_id, sent_at, follows_here):
            self._kept.setdefault(store_id, 0)
        return 0

    def _trusted(self, store_id, sent_at, follows_here):
        if not self.listening or sent_at <= self._forgotten_at:
            return False
        if follows_here and store_id not in self._heard_own:
            return False
        noticed_at = self._noticed_at.get(store_id)
        return noticed_at is None or (noticed_at < sent_at and self._clock() - noticed_at >= GRACE_SECONDS)

    def joined(self, store_id):
        """This process's first socket of ``store_id`` joined: its subscription is to be proven anew."""
        self.joins += 1
        self._joined[store_id] = self.joins
        self._heard_own.discard(store_id)

    def left(self, store_id):
        """This process's last socket of ``store_id`` left: its subscription ends."""
        self._joined.pop(store_id, None)
        self._heard_own.discard(store_id)

    def heard_own(self, store_id, joins):
        """An own message of ``store_id``, sent when ``joins`` joins had been counted, came back through Redis."""
        joined = self._joined.get(store_id)
        if joined is not None and joins >= joined:
            self._heard_own.add(store_id)

    def noticed(self, store_id):
        """Another process follows ``store_id`` from now on; returns the last event kept from it (0: none)."""
        self._noticed_at[store_id] = self._clock()
        return max(self._kept.pop(store_id, 0), self._unannounced.pop(store_id, 0))

    def reset(self, store_id):
        """``store_id`` was reset: the events kept of it are gone."""
        self._kept.pop(store_id, None)
        self._unannounced.pop(store_id, None)

    def forget(self):
        """Notices may have been lost: keep nothing until the hub hears its own again; returns what was kept.

        ``{store_id: last event kept}``, for the stores that kept any.
        """
        kept = {store_id: last for store_id, last in self._kept.items() if last}
        for store_id, last in self._unannounced.items():
            kept[store_id] = max(last, kept.get(store_id, 0))
        self._kept.clear()
        self._unannounced.clear()
        self._heard_own.clear()
        self._forgotten_at = self._clock()
        self.listening = False
        return kept
