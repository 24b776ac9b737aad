"""One subscriber per process and store: fan-out to local sockets, outage tolerance, head checks.

Channels' usual pattern puts every socket in the store's group, so one push
costs one channel-layer message per socket and a Redis outage kills every
socket's receive loop. Instead each process has one hub: it joins a store's
group once (on its own channel) while the store has sockets here, offers each
store message to those sockets (an idle socket gets it written at once, a busy
one in its bounded inbox), and delivers its own process's pushes locally
without a round trip through Redis. On channels_redis's pub/sub layer it sends
a store's events through Redis only while another process follows the store
(``syncapp.followers``).

The channel layer may lose messages (both Redis layers drop when a channel is
full, Redis may be down, a process may die between commit and broadcast), so
the hub also reads the heads of its stores from the database every
``HEAD_CHECK_INTERVAL`` seconds. A store whose head stays ahead of every
broadcast seen for a whole interval gets a ``livesync.head`` nudge, and sockets
whose position is known repair themselves from storage. That one mechanism is
how sockets catch up after a Redis outage, a lost broadcast or a crashed peer.
"""

import asyncio
import contextvars
import logging
import time
import uuid
import weakref

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.core.exceptions import ImproperlyConfigured

from . import conf, db, followers, layer_redis, messages, metrics, presence, publisher, storage

logger = logging.getLogger("syncapp")

_hubs = weakref.WeakKeyDictionary()

# Store messages waiting to go out through the channel layer, per process.
OUTGOING_LIMIT = 10_000
# Store messages sent together at most (one Redis pipeline on the pub/sub layer; see syncapp.publisher), and
# the frames' bytes past which no more join them: a batch stays well inside Redis's output buffer for each
# subscriber (32 MB by default) and its time bound.
PUBLISH_BATCH = 100
PUBLISH_BATCH_BYTES = 1_000_000
# Store messages waiting for this hub in a layer that does not bound its queues (the pub/sub layer): past
# this, they are dropped and the stores' sockets catch up from the database at the next head check.
INBOUND_LIMIT = 10_000
# Head checks a probe may stay unanswered before the layer counts as down (one would be a slow event loop).
PROBE_PATIENCE = 2
# The message a hub sends itself to learn whether the channel layer answers again.
PROBE = "livesync.probe"
# How long stop() waits for the hub's cancelled loops to end.
STOP_TIMEOUT_SECONDS = 2


def existing_hub():
    """The running event loop's hub if this loop serves sockets, else None."""
    return _hubs.get(asyncio.get_running_loop())


def get_hub():
    """The hub of the running event loop (one per process under daphne)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub


async def _twice(call, *args, bounded=True):
    """``await call(*args)``, tried once more at once if it fails; each try ``bounded`` in time.

    A Redis outage leaves dead connections in the client's pool; the first use
    of each after Redis returns fails (and discards it). That is no new outage,
    and the message it carried must not be lost. A Redis that stops answering
    without closing its connections (a network that drops packets) fails the
    call after ``layer_redis.TIMEOUT_SECONDS``, as an outage.
    """
    timeout = layer_redis.TIMEOUT_SECONDS if bounded else None
    try:
        async with asyncio.timeout(timeout):
            return await call(*args)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the second attempt's failure is the one that counts
        _unless_cancelled()
        async with asyncio.timeout(timeout):
            return await call(*args)


def _group_of(message):
    """The channel-layer group a hub's outgoing message goes to."""
    if message["type"] == messages.FOLLOW:
        return messages.FOLLOWS_GROUP
    return messages.group_name(message["store_id"])


def _frame_bytes(message):
    """The encoded frames a store message carries, in characters (about bytes: they are mostly ASCII JSON)."""
    return sum(map(len, message.get("v03_frames", ()))) + sum(map(len, message.get("v04_pages", ())))


def _unbounded_queue(layer, channel_name):
    """The pub/sub layer's queue of ``channel_name`` in this event loop, or None for a layer that bounds its own."""
    loop_layer = getattr(layer, "_get_layer", None)
    if not isinstance(layer, RedisPubSubChannelLayer) or loop_layer is None:
        return None
    return getattr(loop_layer(), "channels", {}).get(channel_name)


def _unless_cancelled():
    """Raise CancelledError if the running task was cancelled but is still running.

    A channels_redis call cancelled in the middle of a read may raise a
    connection error instead of CancelledError: retrying then, or sleeping
    after the "outage", would block a task that was told to stop for good.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Hub:
    def __init__(self, layer=None):
        """A hub on ``layer``, by default the process's default channel layer."""
        self.id = uuid.uuid4().hex
        self.layer = layer or get_channel_layer()
        if self.layer is None:
            raise ImproperlyConfigured(
                "CHANNEL_LAYERS has no 'default' layer: livesync cannot serve sockets (see `manage.py check`)"
            )
        # The in-memory layer lives in this process, whose sockets publish() already served: sending a
        # push's message through it would only bring it back to this hub, to be dropped as its own.
        self.layer_reaches_other_processes = not isinstance(self.layer, InMemoryChannelLayer)
        self.members = {}
        self.last_seen = {}
        self.suspect_heads = {}
        self.channel_name = None
        self.layer_down = False
        # Head checks since the hub's last probe went out unanswered (None: no probe is out).
        self.probe_unanswered = None
        # Stores with a socket whose repair failed (database down): nudged at the next head check that works.
        self.repairs_wanted = set()
        # Whether this process tells the admin its socket counts through Redis (syncapp.presence), and
        # whether its last word there was a non-empty count.
        self.shares_presence = presence.available()
        self._presence_published = False
        self._outgoing = asyncio.Queue()
        # A reset taken from the queue behind other messages, sent in the batch after theirs.
        self._reset_next = None
        self._publisher = publisher.for_layer(self.layer)
        # Whether this hub learns which stores other processes follow, and keeps the others' events off Redis.
        self._tracks_followers = self.layer_reaches_other_processes and self._publisher.counts_receivers
        self.followers = followers.Followers()
        # The pub/sub layer's own queue of messages for this hub, which that layer does not bound.
        self._inbound = None
        self._tasks = []
        self._starting = asyncio.Lock()
        # Set once the hub has a channel of its own to receive on (see _open_channel).
        self._channel_open = asyncio.Event()

    async def join(self, store_id, member):
        """Offer ``store_id``'s messages to ``await member.offer(message)`` from now on."""
        await self._start()
        members = self.members.setdefault(store_id, set())
        members.add(member)
        if len(members) == 1:
            self.followers.joined(store_id)
            await self._group_add(store_id)
            self._notify_following(store_id)

    def socket_count(self, store_id):
        """Sockets of ``store_id`` served by this process."""
        return len(self.members.get(store_id, ()))

    async def leave(self, store_id, member):
        members = self.members.get(store_id)
        if not members:
            return
        members.discard(member)
        if members:
            return
        del self.members[store_id]
        self.last_seen.pop(store_id, None)
        self.suspect_heads.pop(store_id, None)
        self.followers.left(store_id)
        if not self.layer_down:
            try:
                await _twice(self.layer.group_discard, messages.group_name(store_id), self.channel_name)
            except Exception as exc:  # noqa: BLE001 - any layer failure means an outage
                self._layer_failed(exc)

    async def publish(self, store_id, message):
        """Deliver a store message to this process's sockets now, and to other processes soon.

        The channel-layer send happens on the hub's own task, in order, so a
        pusher's next frame never waits for Redis. Messages that cannot be sent
        (Redis down, a backlog past OUTGOING_LIMIT) are dropped: other processes'
        head checks deliver those events from the database instead. Events of a
        store no other process follows are not sent at all (``syncapp.followers``).
        """
        await self._start()
        message = {**message, "store_id": store_id, "origin": self.id, "joins": self.followers.joins}
        try:
            await self._deliver(message)
        finally:
            # Whatever happens to a local socket (or to this task), other processes get the message.
            if message["type"] == messages.EVENTS and self.followers.keeps(store_id):
                self.followers.kept(store_id, message["last"])
                metrics.BROADCASTS_KEPT_LOCAL.inc()
            else:
                if message["type"] == messages.RESET:
                    self.followers.reset(store_id)
                self._send_later(message)

    def _send_later(self, message):
        """Queue ``message`` for the channel layer, unless it is down or the backlog is full."""
        if self.layer_reaches_other_processes and not self.layer_down and self._outgoing.qsize() < OUTGOING_LIMIT:
            self._outgoing.put_nowait(message)

    def _notify_following(self, store_id=None):
        """Tell every hub that this one follows ``store_id`` (None: that it listens for such notices).

        Queued even while the layer counts as down: ``_rejoin`` sends them just before it resumes.
        """
        if self._tracks_followers:
            self._outgoing.put_nowait({"type": messages.FOLLOW, "store_id": store_id, "origin": self.id})

    async def _send_loop(self):
        """Send the outgoing messages in order, those waiting together (see ``_next_batch``).

        A batch whose sending failed is sent once more. Messages sent twice are
        dropped by the sequencers of the sockets that had them; a reset goes in
        a batch of its own, so that no events sent again can follow it.
        """
        while True:
            batch = await self._next_batch()
            if self.layer_down:
                continue
            addressed = [(_group_of(message), message) for message in batch]
            sent_at = self.followers.sending()
            try:
                receivers = await _twice(self._publisher.publish, addressed)
            except Exception as exc:  # noqa: BLE001 - any layer failure means an outage
                self._layer_failed(exc)
                continue
            if self._tracks_followers:
                self._count_followers(batch, receivers, sent_at)

    def _count_followers(self, batch, receivers, sent_at):
        """Learn from what each message reached which stores another process follows (``syncapp.followers``)."""
        try:
            for message, count in zip(batch, receivers, strict=True):
                if message["type"] in (messages.EVENTS, messages.HEAD):
                    store_id = message["store_id"]
                    kept = self.followers.reached(store_id, count, sent_at, follows_here=store_id in self.members)
                    if kept:
                        self._announce_head(store_id, kept)
        except Exception:
            # Counting must never stop this process's broadcasts: without it, every store's go to Redis.
            logger.exception("could not count the subscribers of published store messages")
            self._forget_followers()

    async def _next_batch(self):
        """The next message and those waiting behind it, up to PUBLISH_BATCH messages or PUBLISH_BATCH_BYTES of
        frames, and never a reset among others: one taken behind others waits for the next batch."""
        first, self._reset_next = self._reset_next or await self._outgoing.get(), None
        batch, size = [first], _frame_bytes(first)
        while (
            first["type"] != messages.RESET
            and len(batch) < PUBLISH_BATCH
            and size < PUBLISH_BATCH_BYTES
            and not self._outgoing.empty()
        ):
            message = self._outgoing.get_nowait()
            if message["type"] == messages.RESET:
                self._reset_next = message
                break
            batch.append(message)
            size += _frame_bytes(message)
        return batch

    async def stop(self, timeout=STOP_TIMEOUT_SECONDS):
        """Cancel the hub's loops; returns within ``timeout`` even if a layer call is slow to give up.

        A channels_redis receive cancelled in the middle of its blocking read
        may take its full read timeout to finish; ``asyncio.wait`` bounds that
        without swallowing a cancellation of ``stop`` itself.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _start(self):
        if self._tasks:
            return
        # Locked: with a layer whose new_channel() awaits I/O, two first sockets
        # would otherwise each start a set of loops.
        async with self._starting:
            if self._tasks:
                return
            try:
                await self._open_channel()
                await self._listen_for_notices()
            except Exception as exc:  # noqa: BLE001 - Redis down at start: the pub/sub layer cannot subscribe
                # Sockets are served from the database until it returns; _rejoin opens the channel then.
                self._layer_failed(exc)
            # In a context of their own: they serve every store, not the socket that happened to start them.
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(loop_coroutine, context=contextvars.Context())
                for loop_coroutine in (self._receive_loop(), self._check_loop(), self._send_loop())
            ]

    async def _open_channel(self):
        """The hub's own channel (the pub/sub layer subscribes to it in Redis, so this can fail)."""
        async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
            self.channel_name = await self.layer.new_channel(prefix="livesync.hub.")
        self._inbound = _unbounded_queue(self.layer, self.channel_name)
        self._channel_open.set()

    async def _listen_for_notices(self):
        """Join the group of follow notices; the hub trusts no count until its own notice comes back."""
        if self._tracks_followers:
            await _twice(self.layer.group_add, messages.FOLLOWS_GROUP, self.channel_name)
            self._notify_following()

    async def _group_add(self, store_id):
        if self.layer_down:
            return
        try:
            await _twice(self.layer.group_add, messages.group_name(store_id), self.channel_name)
        except Exception as exc:  # noqa: BLE001 - any layer failure means an outage
            self._layer_failed(exc)

    def _layer_failed(self, exc):
        # Notices sent meanwhile are lost, and Redis may forget this process's subscriptions: nothing is kept
        # off it until the hub hears its own notice again. The head checks deliver what was kept.
        self.followers.forget()
        if not self.layer_down:
            metrics.UNAVAILABLE.labels("channel_layer").inc()
            logger.error(
                "channel layer unreachable (%s): sockets catch up from the database every %ss until it returns",
                exc,
                conf.get("HEAD_CHECK_INTERVAL"),
            )
        self.layer_down = True

    async def _rejoin(self):
        """After an outage: join every group again (a restarted Redis forgot them), then resume.

        A message to the hub's own channel proves the layer answers: the pub/sub
        layer's ``group_add`` on a group it already follows makes no call at all,
        and would report a recovery while Redis is still down.
        """
        if self.channel_name is None:
            await self._open_channel()
        async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
            await self.layer.send(self.channel_name, {"type": PROBE})
        await self._listen_for_notices()
        # Sockets that join meanwhile are subscribed too: _group_add skips them while the layer counts as down.
        subscribed = set()
        while unsubscribed := self.members.keys() - subscribed:
            for store_id in unsubscribed:
                await _twice(self.layer.group_add, messages.group_name(store_id), self.channel_name)
            subscribed |= unsubscribed
        for store_id in self.members:
            self._notify_following(store_id)
        self.layer_down = False
        logger.warning("channel layer reachable again: broadcasts resumed")

    async def _receive_loop(self):
        await self._channel_open.wait()
        while True:
            try:
                message = await _twice(self.layer.receive, self.channel_name, bounded=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any layer failure means an outage
                _unless_cancelled()
                self._layer_failed(exc)
                await asyncio.sleep(conf.get("HEAD_CHECK_INTERVAL"))
                continue
            if message["type"] == PROBE:
                self.probe_unanswered = None
            elif message["type"] == messages.FOLLOW:
                self._noticed(message)
            elif message.get("origin") != self.id:
                await self._deliver(message)
            elif message.get("store_id") in self.members:
                self.followers.heard_own(message["store_id"], message.get("joins", -1))
            self._bound_inbound_backlog()

    def _noticed(self, notice):
        """A hub follows a store, or listens for notices: this one's own first notice makes it listen too."""
        store_id = notice["store_id"]
        if notice["origin"] == self.id:
            if store_id is None:
                self.followers.listening = True
            return
        if store_id is None:
            return
        kept = self.followers.noticed(store_id)
        if kept:
            self._announce_head(store_id, kept)

    def _forget_followers(self):
        """Keep no store's events off Redis until this hub hears its own notice again; announce what it kept."""
        for store_id, kept in self.followers.forget().items():
            self._announce_head(store_id, kept)

    def _announce_head(self, store_id, head):
        """Tell other processes' sockets of ``store_id`` to catch up to ``head`` from storage."""
        self._send_later(
            {
                "type": messages.HEAD,
                "store_id": store_id,
                "head": head,
                "origin": self.id,
                "joins": self.followers.joins,
            }
        )

    async def _deliver(self, message):
        store_id = message.get("store_id")
        if store_id not in self.members:
            # A push over HTTP, or a broadcast that crossed this hub's leaving the group: nobody to tell, and
            # nothing to keep (last_seen of a store without sockets would grow with every store ever pushed to).
            return
        if message["type"] == messages.EVENTS:
            self.last_seen[store_id] = max(self.last_seen.get(store_id, 0), message["last"])
            if "committed_at" in message:
                path = "local" if message.get("origin") == self.id else "remote"
                metrics.FANOUT_SECONDS.labels(path).observe(max(0.0, time.time() - message["committed_at"]))
        # A member's offer never raises (a socket that cannot be written to closes itself), so one
        # socket's failure never keeps a message from the others.
        for member in list(self.members.get(store_id, ())):
            await member.offer(message)

    async def _check_loop(self):
        while True:
            await asyncio.sleep(conf.get("HEAD_CHECK_INTERVAL"))
            if self.layer_down:
                try:
                    await self._rejoin()
                except Exception:  # noqa: BLE001 - still down; the outage was logged once
                    pass
            elif self._inbound is not None:
                await self._probe()
            await self._publish_presence()
            # A follower whose notice was lost learns of the events kept from it, and this hub of the follower.
            for store_id, head in self.followers.unannounced().items():
                self._announce_head(store_id, head)
            if not self.members:
                continue
            try:
                heads = await db.run(storage.heads, list(self.members))
            except Exception:  # noqa: BLE001 - the database's own outage is reported by pushes
                logger.debug("head check failed", exc_info=True)
                continue
            await self._nudge_stale(heads)

    async def _publish_presence(self):
        """Record this process's sockets per store in Redis, for the admin (see ``syncapp.presence``)."""
        if not self.shares_presence or (not self.members and not self._presence_published):
            return
        counts = {store_id: len(members) for store_id, members in self.members.items()}
        try:
            await presence.publish(self.id, counts)
        except Exception:  # noqa: BLE001 - Redis down: the counts expire, the hub's outage handling goes on
            logger.debug("could not record socket counts", exc_info=True)
            return
        self._presence_published = bool(counts)

    async def _probe(self):
        """Send the hub a message through the layer; one still unanswered PROBE_PATIENCE checks later is an outage.

        Only on the pub/sub layer: a process that only receives would never
        learn of an outage there, because the layer reconnects on its own and
        drops what was published meanwhile (``RedisChannelLayer``'s receive
        fails instead). The outage is then logged, and once Redis answers again
        the hub joins its groups anew (``_rejoin``). The head checks deliver the
        events either way.
        """
        if self.probe_unanswered is not None:
            self.probe_unanswered += 1
            if self.probe_unanswered >= PROBE_PATIENCE:
                self.probe_unanswered = None
                self._layer_failed("a message the hub sent itself did not come back")
            return
        try:
            await _twice(self.layer.send, self.channel_name, {"type": PROBE})
        except Exception as exc:  # noqa: BLE001 - any layer failure means an outage
            self._layer_failed(exc)
            return
        self.probe_unanswered = 0

    def _bound_inbound_backlog(self):
        """Drop this hub's backlog in a layer with unbounded queues once it passes INBOUND_LIMIT.

        channels_redis's pub/sub layer queues every message for a channel
        without limit (``RedisPubSubLoopLayer.channels``). A hub that falls that
        far behind would hold them all in memory; its sockets catch up from the
        database instead, as after any lost broadcast.
        """
        queue = self._inbound
        if queue is None or queue.qsize() <= INBOUND_LIMIT:
            return
        dropped = queue.qsize()
        while not queue.empty():
            queue.get_nowait()
        self.repairs_wanted.update(self.members)
        # Follow notices may have been among them: whoever may follow a store kept here gets a nudge.
        self._forget_followers()
        self._notify_following()
        logger.warning(
            "dropped %s store messages waiting for this process: its sockets catch up from the database", dropped
        )

    def repair_later(self, store_id):
        self.repairs_wanted.add(store_id)

    async def _nudge_stale(self, heads):
        wanted, self.repairs_wanted = self.repairs_wanted, set()
        for store_id in wanted & heads.keys():
            await self._deliver({"type": messages.HEAD, "store_id": store_id, "head": heads[store_id]})
        for store_id, head in heads.items():
            if store_id not in self.members:
                # Its last socket left while the heads were read.
                continue
            seen = self.last_seen.get(store_id, 0)
            suspect = self.suspect_heads.pop(store_id, None)
            if head <= seen:
                continue
            if suspect is not None and seen < suspect:
                self.last_seen[store_id] = head
                await self._deliver({"type": messages.HEAD, "store_id": store_id, "head": head})
            else:
                self.suspect_heads[store_id] = head
