"""The 0.3 sync endpoint: one WebSocket consumer per client socket (``makeCfSync``).

A 0.3 socket is one subscriber of its store (``syncapp.core.Subscriber``):
each committed push reaches it as the pre-encoded ``PullRes`` frames of the
store message, forwarded as they are, in order. Pushes and pulls go through
the core; this module only decodes frames and writes the reference's answers.
It knows no SQL.
"""

import hmac
import logging

from .. import conf, core
from ..core import eventlog
from ..core.hooks import observe
from ..fanout import messages
from ..protocol.generations import V03
from ..server.websocket import ClientGone, StoreSocketConsumer
from . import codec

logger = logging.getLogger("syncapp")

# Wrong admin secrets one socket may send; the last one closes it, so a secret cannot be guessed on one socket
# at the speed frames arrive, only one handshake (and its validator) per few guesses.
ADMIN_SECRET_ATTEMPTS = 3
# The close code of a socket that sent too many wrong admin secrets: the client's fault, and not a code that
# says "retry" (1011-1013 do). RFC 6455's 1008 (policy violation) would say so, but daphne (autobahn) sends
# only 1000 and 3000-4999 from a consumer, so a private code: 4000 + HTTP's 403 Forbidden.
CLOSE_ADMIN_SECRET_REFUSED = 4403


class V03Consumer(StoreSocketConsumer):
    """``@livestore/sync-cf`` 0.3 protocol at ``…/websocket?storeId=…&payload=…``."""

    generation = V03
    # Wrong admin secrets this socket sent (ADMIN_SECRET_ATTEMPTS).
    wrong_admin_secrets = 0

    def connected_to_store(self):
        self.subscriber = core.Subscriber(self.store_id, self, _forwarded_frames, self._catch_up)

    async def send_message(self, message):
        await self.send(text_data=codec.encode(message))

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            await self.send_message(codec.Error(requestId="", message="Binary frames are not supported"))
            return
        if self.too_large(text_data):
            await self.send_message(
                codec.Error(
                    requestId=codec.peek_request_id(text_data) or "",
                    message=f"Message too large: more than {conf.get('MAX_MESSAGE_BYTES')} bytes",
                )
            )
            return
        try:
            message = codec.decode(text_data)
        except codec.InvalidFrame as exc:
            await self.send_message(codec.Error(requestId=exc.request_id or "", message=str(exc)))
            return
        handler = self._handlers[type(message)]
        try:
            if type(message) is codec.PushReq:
                await self.run_push(handler(self, message))
            else:
                await handler(self, message)
        except ClientGone:
            raise
        except Exception:
            # A bug must cost one request, not the socket: answer and keep serving.
            logger.exception("%s failed for store %r", type(message).__name__, self.store_id)
            await self.send_message(codec.Error(requestId=message.requestId, message="Internal server error"))

    async def _ping(self, message):
        await self.send_message(codec.Pong())

    async def _pull(self, message):
        runs = core.pull(self.context, message, message.cursor or 0, codec.pull_item, conf.get("PULL_CHUNK_SIZE"))
        try:
            await self.subscriber.stream(self._frames(runs, "pull", message.requestId))
        except core.PullFailed as failed:
            await self.send_message(codec.Error(requestId=message.requestId, message=failed.outcome.reason))

    async def _frames(self, runs, context, request_id):
        """``(PullRes frame, last seqNum)`` for each run; a pull always gets one, an empty repair none.

        An empty store's pull is answered with one empty chunk, as the
        reference does. Chunks hold at most PULL_CHUNK_SIZE events and are cut
        by bytes too (``syncapp.protocol.pages``).
        """
        async for run in runs:
            if run.count or context == "pull":
                frame = codec.pull_res(run.batch, context, request_id, run.remaining)
                await observe("ON_PULL_RES", frame, self.context)
                yield codec.encode(frame), run.last

    def _catch_up(self, after, request_id):
        runs = core.runs(self.store_id, after, codec.pull_item, conf.get("PULL_CHUNK_SIZE"))
        return self._frames(runs, "push", request_id)

    async def _push(self, message):
        request = core.PushRequest(message.requestId, message.batch, message)
        await core.push(self.context, request, lambda outcome: self._answer_push(message, outcome), self.socket_id)

    async def _answer_push(self, message, outcome):
        """The reference's answer to a push, and what this socket must be sent with it."""
        request_id = message.requestId
        sequencer = self.subscriber.sequencer
        kind = type(outcome)
        if kind is core.Acknowledged:
            if message.batch:
                sequencer.client_has(message.batch[0].parentSeqNum)
            answer = codec.PushAck(requestId=request_id)
        elif kind is core.StaleParent:
            await self._send_missed(request_id, outcome)
            answer = codec.Error(requestId=request_id, message=codec.parent_mismatch_message(*outcome))
        else:
            answer = codec.Error(requestId=request_id, message=outcome.reason)
        await observe("ON_PUSH_RES", answer, self.context)
        await self.send_message(answer)
        if kind is not core.Acknowledged or not message.batch:
            return
        if outcome.announcement is not None:
            for frame in outcome.announcement.v03_frames:
                await observe("ON_PULL_RES", frame, self.context)
        elif sequencer.cursor < message.batch[-1].seqNum:
            # A retry of events stored before: the client confirms them only by their echo.
            await self.subscriber.repair(request_id)

    async def _send_missed(self, request_id, stale):
        """Before rejecting a stale push, send the events committed since the pusher's upstream head.

        The push's parent is that head. A 0.3.1 client that reconnected never
        pulls again, so without this it would never receive the events
        committed while it was away: send them (minus what this socket already
        got) before the rejection, and it rebases onto them.
        """
        if stale.received < stale.head:
            self.subscriber.sequencer.client_has(stale.received)
            if self.subscriber.sequencer.cursor < stale.head:
                await self.subscriber.repair(request_id)

    def frames_for(self, message):
        if message["type"] not in (messages.EVENTS, messages.HEAD):
            return None
        return self.subscriber.frames_for(message)

    async def livesync_events(self, message):
        """A push committed to this store (by any socket in any process) that was queued."""
        await self.subscriber.receive(message)

    async def livesync_head(self, message):
        """The hub saw the store's head move without a broadcast reaching us: catch up from storage."""
        await self.subscriber.receive(message)

    async def _admin_allowed(self, message):
        secret = conf.admin_secret()
        if secret is None:
            await self.send_message(
                codec.Error(requestId=message.requestId, message="Admin frames are disabled on this server")
            )
            return False
        if self.wrong_admin_secrets >= ADMIN_SECRET_ATTEMPTS:
            # Frames queued before the socket closed are not compared any more.
            return False
        if hmac.compare_digest(message.adminSecret.encode(), secret.encode()):
            return True
        self.wrong_admin_secrets += 1
        await self.send_message(codec.Error(requestId=message.requestId, message="Invalid admin secret"))
        if self.wrong_admin_secrets >= ADMIN_SECRET_ATTEMPTS:
            self.close_soon(CLOSE_ADMIN_SECRET_REFUSED, f"{ADMIN_SECRET_ATTEMPTS} wrong admin secrets")
        return False

    async def _admin_reset(self, message):
        if not await self._admin_allowed(message):
            return
        await eventlog.reset(self.store_id, origin=self.socket_id)
        self.subscriber.sequencer.restart()
        await self.send_message(codec.AdminResetRoomRes(requestId=message.requestId))

    async def _admin_info(self, message):
        if not await self._admin_allowed(message):
            return
        info = codec.durable_object_info(self.store_id)
        await self.send_message(codec.AdminInfoRes(requestId=message.requestId, info=info))

    _handlers = {
        codec.Ping: _ping,
        codec.PullReq: _pull,
        codec.PushReq: _push,
        codec.AdminResetRoomReq: _admin_reset,
        codec.AdminInfoReq: _admin_info,
    }


def _forwarded_frames(message):
    return message["v03_frames"]
