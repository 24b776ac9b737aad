"""The 0.4 sync endpoint over WebSocket: Effect RPC from ``makeWsSync``, on any path with ``?transport=ws``.

One socket carries several requests at once: pushes, non-live pulls and live
pulls (subscriptions), told apart by their request ids. A live pull hands
over from catch-up to live delivery without a gap or a duplicate: it is
registered before its first read, store messages that arrive while the
backlog streams wait in its queue, and from then on a per-subscription
Sequencer forwards, drops or repairs each committed batch exactly as the 0.3
consumer does per socket. Every committed push reaches every live pull of
the store, the pusher's own included (0.4 clients move their upstream head
only on pulled events).
"""

import asyncio
import collections
import logging

from . import conf, messages, rpc_calls, rpc_protocol
from .generations import V04
from .hub import get_hub
from .sequencer import DROP, FORWARD, Sequencer
from .sockets import ClientGone, StoreSocketConsumer

logger = logging.getLogger("syncapp")

WS_TAGS = frozenset({rpc_protocol.WS_PULL, rpc_protocol.WS_PUSH})


class Subscription:
    """One live ``SyncWsRpc.Pull``: where its client stands, and store messages held back during catch-up."""

    def __init__(self, request_id):
        self.request_id = request_id
        self.sequencer = Sequencer()
        self.catching_up = True
        self.held = collections.deque()


class RpcSyncConsumer(StoreSocketConsumer):
    """``@livestore/sync-cf`` 0.4 ``makeWsSync`` protocol at ``…?storeId=…&payload=…&transport=ws``."""

    generation = V04

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.subscriptions = {}
        self.pulls = {}

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            text_data = bytes_data
        elif self.too_large(text_data):
            await self._defect(f"Message too large: more than {conf.get('MAX_MESSAGE_BYTES')} bytes")
            return
        try:
            message = rpc_protocol.decode(text_data)
        except rpc_protocol.ProtocolError as exc:
            await self._defect(exc.defect)
            return
        kind = type(message)
        if kind is rpc_protocol.Ping:
            await self.send(text_data=rpc_protocol.pong())
        elif kind is rpc_protocol.Interrupt:
            await self._interrupt(message.requestId)
        elif kind is rpc_protocol.Request:
            await self._request(message)
        # Ack and Eof need no answer: catch-up pages are not held back for Acks (see README).

    async def _defect(self, defect):
        """A connection-level failure: the client fails every pending request of this socket."""
        await self.send(text_data=rpc_protocol.encode(rpc_protocol.Defect(defect=defect)))

    async def _send_exit(self, exit_message):
        await self.send(text_data=rpc_protocol.encode(exit_message))

    async def _request(self, request):
        try:
            payload = rpc_protocol.decode_payload(request, WS_TAGS)
        except rpc_protocol.UnknownTag as exc:
            await self._defect(str(exc))
            return
        except rpc_protocol.PayloadError as exc:
            await self._send_exit(rpc_protocol.died(request.id, str(exc)))
            return
        if request.id in self.pulls or request.id in self.subscriptions:
            await self._send_exit(rpc_protocol.died(request.id, f"Request id {request.id} is already in use"))
        elif request.tag == rpc_protocol.WS_PUSH:
            await self.run_push(self._push(request.id, payload))
        elif len(self.pulls.keys() | self.subscriptions.keys()) >= (limit := conf.get("MAX_PULLS_PER_SOCKET")):
            await self._send_exit(
                rpc_calls.unknown_error(request.id, f"Too many pulls: at most {limit} at once per connection")
            )
        else:
            task = asyncio.ensure_future(self._pull(request.id, payload))
            self.pulls[request.id] = task
            task.add_done_callback(lambda done: self._pull_done(request.id, done))

    def _pull_done(self, request_id, task):
        if self.pulls.get(request_id) is task:
            del self.pulls[request_id]

    async def _push(self, request_id, payload):
        await self._send_exit(await rpc_calls.push(self.context, request_id, payload))

    async def _pull(self, request_id, payload):
        subscription = None
        if payload.live:
            # Registered before the first read: every batch committed from now on is held for it.
            subscription = self.subscriptions[request_id] = Subscription(request_id)
        last = None
        try:
            async for response, last in rpc_calls.pull_responses(self.context, request_id, payload):
                await self.send(text_data=rpc_protocol.chunk(request_id, [response]))
                await self.writable()
        except ClientGone:
            self.subscriptions.pop(request_id, None)
            return
        except rpc_calls.CallFailed as failed:
            self.subscriptions.pop(request_id, None)
            await self._send_exit(failed.exit)
            return
        except Exception:
            self.subscriptions.pop(request_id, None)
            logger.exception("pull failed for store %r", self.store_id)
            await self._send_exit(rpc_calls.unknown_error(request_id, "Internal server error"))
            return
        if subscription is None:
            await self._send_exit(rpc_protocol.success(request_id))
            return
        subscription.sequencer.sent(last)
        await self._release(subscription)

    async def _release(self, subscription):
        """Go live: offer the held store messages in order, then deliver new ones as they come."""
        while subscription.held and self.subscriptions.get(subscription.request_id) is subscription:
            await self._offer(subscription, subscription.held.popleft())
        subscription.catching_up = False

    async def _interrupt(self, request_id):
        """The client abandoned a request; unknown and finished ids are ignored, an in-flight push completes."""
        subscription = self.subscriptions.pop(request_id, None)
        task = self.pulls.pop(request_id, None)
        if task is not None:
            task.cancel()
        if subscription is not None or task is not None:
            await self._send_exit(rpc_protocol.interrupted(request_id))

    async def _leave_store(self):
        for task in self.pulls.values():
            task.cancel()
        self.pulls.clear()
        self.subscriptions.clear()
        await super()._leave_store()

    async def livesync_events(self, message):
        """A push committed to this store (by any socket, of either generation, in any process)."""
        await self._to_subscriptions(message)

    async def livesync_head(self, message):
        """The hub saw the store's head move without a broadcast reaching us."""
        await self._to_subscriptions(message)

    async def _to_subscriptions(self, message):
        for subscription in list(self.subscriptions.values()):
            if subscription.catching_up:
                subscription.held.append(message)
            else:
                await self._offer(subscription, message)

    async def _offer(self, subscription, message):
        sequencer = subscription.sequencer
        if message["type"] == messages.HEAD:
            if sequencer.cursor is not None and sequencer.cursor < message["head"]:
                await self._repair(subscription)
            return
        decision = sequencer.on_broadcast(message["first"], message["last"])
        if decision == FORWARD:
            for page in message["v04_pages"]:
                await self.send(text_data=rpc_protocol.chunk_around(subscription.request_id, page))
        elif decision != DROP:
            await self._repair(subscription)

    async def _repair(self, subscription):
        """Send a subscription what it lacks from storage; if the database is down, a later head check retries."""
        request_id = subscription.request_id
        after = subscription.sequencer.cursor
        try:
            async for response, after in rpc_calls.pages_after(self.store_id, request_id, after, context=self.context):
                await self.send(text_data=rpc_protocol.chunk(request_id, [response]))
                await self.writable()
        except rpc_calls.CallFailed:
            logger.warning("could not catch a pull of store %r up: the database is unavailable", self.store_id)
            get_hub().repair_later(self.store_id)
        subscription.sequencer.sent(after)
