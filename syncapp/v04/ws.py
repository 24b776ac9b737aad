"""The 0.4 sync endpoint over WebSocket: Effect RPC from ``makeWsSync``, on any path with ``?transport=ws``.

One socket carries several requests at once: pushes, non-live pulls and live
pulls (subscriptions), told apart by their request ids. Each live pull is one
subscriber of the store (``syncapp.core.Subscriber``), as a 0.3 socket is. It
hands over from catch-up to live delivery without a gap or a duplicate: it is
registered before its first read, store messages that arrive while the
backlog streams are held for it, and from then on its sequencer forwards,
drops or repairs each committed batch. Every committed push reaches every
live pull of the store, the pusher's own included (0.4 clients move their
upstream head only on pulled events).
"""

import asyncio
import collections
import logging

from .. import conf, core
from ..protocol.generations import V04
from ..server.websocket import ClientGone, StoreSocketConsumer
from . import calls, codec

logger = logging.getLogger("syncapp")

WS_TAGS = frozenset({codec.WS_PULL, codec.WS_PUSH})


class V04WsConsumer(StoreSocketConsumer):
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
            message = codec.decode(text_data)
        except codec.InvalidRpcMessage as exc:
            await self._defect(exc.defect)
            return
        kind = type(message)
        if kind is codec.Ping:
            await self.send(text_data=codec.pong())
        elif kind is codec.Interrupt:
            await self._interrupt(message.requestId)
        elif kind is codec.Request:
            await self._request(message)
        # Ack and Eof need no answer: catch-up pages are not held back for Acks (see the docs' Differences page).

    async def _defect(self, defect):
        """A connection-level failure: the client fails every pending request of this socket."""
        await self.send(text_data=codec.encode(codec.Defect(defect=defect)))

    async def _send_exit(self, exit_message):
        await self.send(text_data=codec.encode(exit_message))

    async def _request(self, request):
        try:
            payload = codec.decode_payload(request, WS_TAGS)
        except codec.UnknownRpc as exc:
            await self._defect(str(exc))
            return
        except codec.InvalidPayload as exc:
            await self._send_exit(codec.died(request.id, str(exc)))
            return
        if request.id in self.pulls or request.id in self.subscriptions:
            await self._send_exit(codec.died(request.id, f"Request id {request.id} is already in use"))
        elif request.tag == codec.WS_PUSH:
            await self.run_push(self._push(request.id, payload))
        elif len(self.pulls.keys() | self.subscriptions.keys()) >= (limit := conf.get("MAX_PULLS_PER_SOCKET")):
            await self._send_exit(
                calls.unknown_error(request.id, f"Too many pulls: at most {limit} at once per connection")
            )
        else:
            task = asyncio.ensure_future(self._pull(request.id, payload))
            self.pulls[request.id] = task
            task.add_done_callback(lambda done: self._pull_done(request.id, done))

    def _pull_done(self, request_id, task):
        if self.pulls.get(request_id) is task:
            del self.pulls[request_id]

    async def _push(self, request_id, payload):
        await calls.push(self.context, request_id, payload, self._send_exit, self.socket_id)

    async def _pull(self, request_id, payload):
        subscriber = core.Subscriber(self.store_id, self, _forwarded_page(request_id), self._catch_up(request_id))
        if payload.live:
            # Registered before the first read: every batch committed from now on is held for it.
            subscriber.held = collections.deque()
            self.subscriptions[request_id] = subscriber
        try:
            await subscriber.stream(calls.pull_frames(self.context, request_id, payload))
        except ClientGone:
            self.subscriptions.pop(request_id, None)
            return
        except core.PullFailed as failed:
            self.subscriptions.pop(request_id, None)
            await self._send_exit(calls.exit_of(request_id, failed.outcome))
            return
        except Exception:
            self.subscriptions.pop(request_id, None)
            logger.exception("pull failed for store %r", self.store_id)
            await self._send_exit(calls.unknown_error(request_id, "Internal server error"))
            return
        if not payload.live:
            await self._send_exit(codec.success(request_id))
            return
        await self._release(request_id, subscriber)

    def _catch_up(self, request_id):
        def catch_up(after, _broadcast_request_id):
            runs = core.runs(self.store_id, after, codec.pull_item, codec.MAX_PAGE_EVENTS)
            return calls.frames(runs, request_id, self.context)

        return catch_up

    async def _release(self, request_id, subscriber):
        """Go live: offer the held store messages in order, then deliver new ones as they come."""
        while subscriber.held and self.subscriptions.get(request_id) is subscriber:
            await subscriber.receive(subscriber.held.popleft())
        subscriber.held = None

    async def _interrupt(self, request_id):
        """The client abandoned a request; unknown and finished ids are ignored, an in-flight push completes."""
        subscription = self.subscriptions.pop(request_id, None)
        task = self.pulls.pop(request_id, None)
        if task is not None:
            task.cancel()
        if subscription is not None or task is not None:
            await self._send_exit(codec.interrupted(request_id))

    async def _leave_store(self):
        for task in self.pulls.values():
            task.cancel()
        self.pulls.clear()
        self.subscriptions.clear()
        await super()._leave_store()

    async def receive_own(self, message):
        """This socket's own push: its live pulls get the events now, before the push's ``Exit``."""
        await self._to_subscriptions(message)

    async def livesync_events(self, message):
        """A push committed to this store (by any socket, of either generation, in any process)."""
        await self._to_subscriptions(message)

    async def livesync_head(self, message):
        """The hub saw the store's head move without a broadcast reaching us."""
        await self._to_subscriptions(message)

    async def _to_subscriptions(self, message):
        for subscriber in list(self.subscriptions.values()):
            if subscriber.held is not None:
                subscriber.held.append(message)
            else:
                await subscriber.receive(message)


def _forwarded_page(request_id):
    """A committed batch's pre-encoded pages, in this subscription's Chunk envelope."""

    def forward(message):
        return [codec.chunk_around(request_id, page) for page in message["v04_pages"]]

    return forward
