"""One subscriber per process and store: fan-out to local sockets, outage tolerance, head checks.

Channels' usual pattern puts every socket in the store's group, so one push
costs one channel-layer message per socket and a Redis outage kills every
socket's receive loop. Instead each process has one hub: it joins a store's
group once (on its own channel) while the store has sockets here, offers each
store message to those sockets (an idle socket gets it written at once, a busy
one in its bounded inbox), and delivers its own process's pushes locally
without a round trip through Redis. On channels_redis's pub/sub layer it sends
a store's events through Redis only while another process follows the store
(``syncapp.fanout.followers``).

The channel layer may lose messages (both Redis layers drop when a channel is
full, Redis may be down, a process may die between commit and broadcast), so
the hub also reads the heads of its stores from the database every
``HEAD_CHECK_INTERVAL`` seconds. A store whose head stays ahead of every
broadcast seen for a whole interval gets a ``livesync.head`` nudge, and sockets
whose position is known repair themselves from storage. That one mechanism is
how sockets catch up after a Redis outage, a lost broadcast or a crashed peer.

The hub watches the layer's Redis hosts (``syncapp.fanout.hosts.Watch``) and joins its groups again on a
host back from an outage or a restart.
"""

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
import weakref

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from .. import conf, metrics, storage
from ..storage import db
from . import followers, hosts, layer_redis, looplag, messages, outgoing, presence, publisher

logger = logging.getLogger("syncapp")

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, "Hub"] = weakref.WeakKeyDictionary()

# Store messages waiting for this hub in a layer that does not bound its queues (the pub/sub layer): past
# this, they are dropped and the stores' sockets catch up from the database at the next head check.
INBOUND_LIMIT = 10_000
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
        # The layer's Redis hosts, in channels_redis's order (none for a layer without Redis).
        self.shards = []
        if layer_redis.is_redis_layer(self.layer):
            self.shards = [
                hosts.Shard(index, layer_redis.describe(host)) for index, host in enumerate(layer_redis.hosts())
            ]
        # Stores with a socket whose repair failed (database down): nudged at the next head check that works.
        self.repairs_wanted = set()
        # Whether this process tells the admin its socket counts through Redis (syncapp.fanout.presence), and
        # whether its last word there was a non-empty count.
        self.shares_presence = presence.available()
        self._presence_published = False
        self._outgoing = outgoing.Outgoing()
        self._publisher = publisher.for_layer(self.layer)
        # Whether this hub learns which stores other processes follow, and keeps the others' events off Redis.
        self._tracks_followers = self.layer_reaches_other_processes and self._publisher.counts_receivers
        self.followers = followers.Followers()
        self.hosts = hosts.Watch(self.shards, rejoin=self._rejoin, forget_followers=self.followers.forget)
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
        group = messages.group_name(store_id)
        if self.channel_name is not None and not self._is_down(group):
            try:
                await hosts.twice(self.layer.group_discard, group, self.channel_name)
            except Exception as exc:  # noqa: BLE001 - any layer failure may mean an outage
                self._layer_failed(exc)

    def _shard_of(self, group):
        """The host the layer keeps ``group`` on (None for a layer without Redis)."""
        return self.shards[layer_redis.group_shard(group)] if self.shards else None

    def _stores_on(self, shard):
        """The stores with sockets here whose groups live on ``shard``."""
        return {store_id for store_id in self.members if self._shard_of(messages.group_name(store_id)) is shard}

    def _is_down(self, group):
        shard = self._shard_of(group)
        return shard is not None and shard.down

    async def publish(self, store_id, message):
        """Deliver a store message to this process's sockets now, and to other processes soon.

        The channel-layer send happens on the hub's own task, in order, so a
        pusher's next frame never waits for Redis. Messages that cannot be sent
        (their Redis host down, a backlog past ``outgoing.OUTGOING_LIMIT``) are dropped: other
        processes' head checks deliver those events from the database instead.
        Events of a store no other process follows are not sent at all
        (``syncapp.fanout.followers``).
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
        """Queue ``message`` for the channel layer, unless its host is down or the backlog is full."""
        if (
            self.layer_reaches_other_processes
            and not self._is_down(outgoing.group_of(message))
            and not self._outgoing.full()
        ):
            self._outgoing.put(message)

    def _notify_following(self, store_id=None):
        """Tell every hub that this one follows ``store_id`` (None: that it listens for such notices).

        Queued even while their host counts as down: the send loop drops them then, and ``_rejoin`` sends
        them again.
        """
        if self._tracks_followers:
            self._outgoing.put({"type": messages.FOLLOW, "store_id": store_id, "origin": self.id})

    async def _send_loop(self):
        """Send the outgoing messages in order, those waiting together (``Outgoing.next_batch``).

        Each host gets the batch's messages of its groups at once, all hosts
        concurrently; those of a host that is down are dropped. A host's share
        whose sending failed is sent once more. Messages sent twice are dropped
        by the sequencers of the sockets that had them; a reset goes in a batch
        of its own, so that no events sent again can follow it.
        """
        while True:
            batch = await self._outgoing.next_batch()
            by_shard = {}
            for message in batch:
                group = outgoing.group_of(message)
                shard = self._shard_of(group)
                if shard is None or not shard.down:
                    by_shard.setdefault(shard, []).append((group, message))
            sent_at = self.followers.sending()
            await asyncio.gather(*(self._send(shard, addressed, sent_at) for shard, addressed in by_shard.items()))

    async def _send(self, shard, addressed, sent_at):
        """Publish ``(group, message)`` pairs whose groups live on ``shard``."""
        try:
            receivers = await hosts.twice(self._publisher.publish, addressed, None if shard is None else shard.index)
        except Exception as exc:  # noqa: BLE001 - any layer failure may mean an outage
            self._layer_failed(exc)
            return
        if self._tracks_followers:
            self._count_followers([message for _, message in addressed], receivers, sent_at)

    def _count_followers(self, batch, receivers, sent_at):
        """Learn from what each message reached which stores another process follows (``syncapp.fanout.followers``)."""
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
                # Sockets are served from the database until it returns; the watch opens the channel then.
                for shard in self.shards:
                    shard.joined = False
                self._layer_failed(exc)
            # Its waits on Redis are judged by this loop's clock; it also tells the operator of a busy loop.
            looplag.clock()
            loops = [self._receive_loop(), self._check_loop(), self._send_loop()]
            if self.shards:
                loops.append(self._watch_loop())
            # In a context of their own: they serve every store, not the socket that happened to start them.
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(coroutine, context=contextvars.Context()) for coroutine in loops]

    async def _open_channel(self):
        """The hub's own channel (the pub/sub layer subscribes to it in Redis, so this can fail)."""
        async with looplag.timeout(layer_redis.TIMEOUT_SECONDS):
            self.channel_name = await self.layer.new_channel(prefix="livesync.hub.")
        self._inbound = hosts.unbounded_queue(self.layer, self.channel_name)
        self._channel_open.set()

    async def _listen_for_notices(self):
        """Join the group of follow notices; the hub trusts no count until its own notice comes back."""
        if self._tracks_followers:
            await hosts.twice(self.layer.group_add, messages.FOLLOWS_GROUP, self.channel_name)
            self._notify_following()

    async def _group_add(self, store_id):
        group = messages.group_name(store_id)
        shard = self._shard_of(group)
        # Without a channel every host waits for _rejoin, which joins this group too.
        if self.channel_name is None or (shard is not None and shard.down):
            return
        try:
            await hosts.twice(self.layer.group_add, group, self.channel_name)
        except Exception as exc:  # noqa: BLE001 - any layer failure may mean an outage
            if shard is not None:
                shard.joined = False
            self._layer_failed(exc)

    def _layer_failed(self, exc):
        """A call to the channel layer failed: the watch finds out at once which host is down, if any.

        Notices sent meanwhile may be lost, and Redis may forget this process's
        subscriptions: nothing is kept off it until the hub hears its own notice
        again. The head checks deliver what was kept, and the messages lost.
        """
        self.followers.forget()
        if self.shards:
            logger.debug("a channel layer call failed: %s", exc)
            self.hosts.now.set()
        else:
            logger.error("channel layer call failed (%s): sockets catch up from the database", exc)

    async def _watch_loop(self):
        """Once per head check, or at once after a failed call: watch the hosts and record the socket counts."""
        while True:
            await asyncio.gather(self.hosts.watch(), self._publish_presence())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(conf.get("HEAD_CHECK_INTERVAL")):
                    await self.hosts.now.wait()
            self.hosts.now.clear()
            # Whatever made it forget (an outage, a dropped backlog, a failed count), the hub keeps nothing off
            # Redis until its own notice comes back through the group of notices.
            if self._tracks_followers and not self.followers.listening:
                self._notify_following()

    async def _rejoin(self, shard):
        """Join every group this hub has on host ``shard`` again (a restarted Redis forgot them), and tell the
        other hubs it follows their stores.

        On the pub/sub layer redis-py subscribes again by itself once it
        reconnects, and the layer's ``group_add`` of a group it follows makes
        no call; the groups joined while the host was down are joined here.
        """
        if self.channel_name is None:
            await self._open_channel()
        notices_here = self._tracks_followers and self._shard_of(messages.FOLLOWS_GROUP) is shard
        if notices_here:
            await hosts.twice(self.layer.group_add, messages.FOLLOWS_GROUP, self.channel_name)
        # Sockets that join meanwhile are joined too: _group_add skips them while the host counts as down.
        joined = set()
        while missing := self._stores_on(shard) - joined:
            for store_id in missing:
                await hosts.twice(self.layer.group_add, messages.group_name(store_id), self.channel_name)
            joined |= missing
        # Notices sent while the group of notices was gone were lost: then every store's is sent again.
        following = set(self.members) if notices_here else joined & self.members.keys()
        for store_id in following:
            self._notify_following(store_id)

    async def _receive_loop(self):
        await self._channel_open.wait()
        while True:
            try:
                message = await hosts.twice(self.layer.receive, self.channel_name, bounded=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any layer failure may mean an outage
                hosts.unless_cancelled()
                self._layer_failed(exc)
                await asyncio.sleep(conf.get("HEAD_CHECK_INTERVAL"))
                continue
            if message["type"] == messages.FOLLOW:
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
        """Record this process's sockets per store in Redis, for the admin (see ``syncapp.fanout.presence``)."""
        if not self.shares_presence or (not self.members and not self._presence_published):
            return
        counts = {store_id: len(members) for store_id, members in self.members.items()}
        try:
            await presence.publish(self.id, counts)
        except Exception:  # noqa: BLE001 - Redis down: the counts expire, the hub's outage handling goes on
            logger.debug("could not record socket counts", exc_info=True)
            return
        self._presence_published = bool(counts)

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
