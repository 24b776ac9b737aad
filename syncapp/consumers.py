"""The 0.3 sync endpoint: one WebSocket consumer per client socket (``makeCfSync``).

The store's channel-layer group is the Durable Object analogue: each committed
push is announced to it (``syncapp.eventlog``) pre-encoded for both protocol
generations, and the process's hub (``syncapp.hub``) hands store messages to
each socket's bounded inbox (``syncapp.sockets``). A 0.3 socket forwards the
``PullRes`` frame as is, in order, per its Sequencer. Storage is reached only
through ``syncapp.eventlog`` / ``syncapp.storage`` on the database pool
(``syncapp.db``); this module knows no SQL.
"""

import hmac
import logging

from django.db import DatabaseError

from . import conf, eventlog, messages, pages, protocol, storage
from .generations import V03
from .hooks import HookRejected, observe, run_hook
from .hub import get_hub
from .sequencer import DROP, FORWARD, Sequencer
from .sockets import ClientGone, StoreSocketConsumer

logger = logging.getLogger("syncapp")

# requestId of the push-context PullRes that repairs a socket outside any request.
CATCH_UP_REQUEST_ID = "livesync-catch-up"


class SyncConsumer(StoreSocketConsumer):
    """``@livestore/sync-cf`` 0.3 protocol at ``…/websocket?storeId=…&payload=…``."""

    generation = V03

    def connected_to_store(self):
        self.sequencer = Sequencer()

    async def send_message(self, message):
        await self.send(text_data=protocol.encode(message))

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            await self.send_message(protocol.Error(requestId="", message="Binary frames are not supported"))
            return
        if self.too_large(text_data):
            await self.send_message(
                protocol.Error(
                    requestId=protocol.peek_request_id(text_data) or "",
                    message=f"Message too large: more than {conf.get('MAX_MESSAGE_BYTES')} bytes",
                )
            )
            return
        try:
            message = protocol.decode(text_data)
        except protocol.ProtocolError as exc:
            await self.send_message(protocol.Error(requestId=exc.request_id or "", message=str(exc)))
            return
        handler = self._handlers[type(message)]
        try:
            if type(message) is protocol.PushReq:
                await self.run_push(handler(self, message))
            else:
                await handler(self, message)
        except ClientGone:
            raise
        except Exception:
            # A bug must cost one request, not the socket: answer and keep serving.
            logger.exception("%s failed for store %r", type(message).__name__, self.store_id)
            await self.send_message(protocol.Error(requestId=message.requestId, message="Internal server error"))

    async def _ping(self, message):
        await self.send_message(protocol.Pong())

    async def _run_hook(self, name, message):
        await run_hook(name, message, protocol.to_builtins, self.context)

    async def _pull(self, message):
        try:
            await self._run_hook("ON_PULL", message)
            await self._stream(message.requestId, "pull", after=message.cursor or 0)
        except HookRejected as exc:
            await self.send_message(protocol.Error(requestId=message.requestId, message=str(exc)))
        except DatabaseError:
            logger.exception("pull failed for store %r", self.store_id)
            await self.send_message(
                protocol.Error(requestId=message.requestId, message="Pull failed: the database is unavailable")
            )

    async def _stream(self, request_id, context, after):
        """Send every event after ``after`` in chunks, ending with one whose ``remaining`` is 0.

        Reading goes on until the head is reached, so events committed while a
        long pull streams are part of it. A pull always gets at least one chunk
        (the reference's answer for an empty store); a repair sends only events.
        Chunks hold at most PULL_CHUNK_SIZE events and are cut by bytes too
        (``syncapp.pages``), and each waits until the client has taken most of
        what was sent before (``writable``), so a pull costs the server one
        database read of memory however large the backlog and however slowly
        the client reads.
        """
        chunk_size = conf.get("PULL_CHUNK_SIZE")
        async for page in eventlog.reads(self.store_id, after):
            items = [protocol.encode_item(eventlog.wire_event(stored), stored.created_at) for stored in page.events]
            if not items:
                if context == "pull":
                    await self._send_pull_res(protocol.pull_res([], context, request_id, page.remaining))
                continue
            sent = 0
            for run in pages.split(items, chunk_size):
                sent += len(run)
                after = page.events[sent - 1].seq_num
                await self._send_pull_res(protocol.pull_res(run, context, request_id, max(0, page.head - after)))
                await self.writable()
        self.sequencer.sent(after)

    async def _send_pull_res(self, message):
        await observe("ON_PULL_RES", message, protocol.to_builtins, self.context)
        await self.send_message(message)

    async def _push_res(self, message):
        await observe("ON_PUSH_RES", message, protocol.to_builtins, self.context)
        await self.send_message(message)

    async def _push(self, message):
        request_id = message.requestId
        if not message.batch:
            await self._push_res(protocol.PushAck(requestId=request_id))
            return
        refusal = self.context.push_refusal(len(message.batch))
        if refusal is not None:
            await self._push_res(protocol.Error(requestId=request_id, message=refusal))
            return
        try:
            await self._run_hook("ON_PUSH", message)
            appended = await eventlog.commit(self.store_id, message.batch, generation=self.generation)
        except storage.ParentMismatch as mismatch:
            await self._reject_stale_push(request_id, mismatch)
            return
        except (storage.PushRejected, HookRejected) as exc:
            await self._push_res(protocol.Error(requestId=request_id, message=str(exc)))
            return
        except eventlog.StoreUnavailable as exc:
            logger.exception("push failed for store %r", self.store_id)
            await self._push_res(protocol.Error(requestId=request_id, message=str(exc)))
            return
        self.sequencer.client_has(message.batch[0].parentSeqNum)
        await self._push_res(protocol.PushAck(requestId=request_id))
        written = message.batch[appended.already_stored :]
        if written:
            await self._broadcast(request_id, written, appended)
        elif self.sequencer.cursor < message.batch[-1].seqNum:
            # A retry of events stored before: the client confirms them only by their echo.
            await self._repair(request_id)

    async def _reject_stale_push(self, request_id, mismatch):
        """Reject a push whose parent is not the head, first sending what the client lacks.

        The push's parent is the client's upstream head. A 0.3.1 client that
        reconnected never pulls again, so without this it would never receive
        the events committed while it was away: send them (minus what this
        socket already got) before the rejection, and it rebases onto them.
        """
        if mismatch.received < mismatch.head:
            self.sequencer.client_has(mismatch.received)
            if self.sequencer.cursor < mismatch.head:
                await self._repair(request_id)
        await self._push_res(
            protocol.Error(
                requestId=request_id, message=protocol.parent_mismatch_message(mismatch.received, mismatch.head)
            )
        )

    async def _broadcast(self, request_id, batch, appended):
        frames = protocol.push_frames(batch, appended.created_at, request_id)
        for frame in frames:
            await observe("ON_PULL_RES", frame, protocol.to_builtins, self.context)
        # The echo to this socket is written at once, right after the PushAck (see StoreSocketConsumer.offer).
        self.announcing = True
        try:
            await eventlog.announce(self.store_id, batch, appended, request_id, v03_frames=frames)
        finally:
            self.announcing = False

    def frames_for(self, message):
        """A committed push: its PullRes frames if it continues what the socket got, nothing if it got it already."""
        if message["type"] != messages.EVENTS:
            return None
        decision = self.sequencer.on_broadcast(message["first"], message["last"])
        if decision == FORWARD:
            return message["v03_frames"]
        if decision == DROP:
            return ()
        return None

    async def livesync_events(self, event):
        """A push committed to this store (by any socket in any process) that was queued."""
        frames = self.frames_for(event)
        if frames is None:
            await self._repair(event["request_id"])
            return
        for frame in frames:
            await self.send(text_data=frame)

    async def _repair(self, request_id):
        """Send this socket what it lacks from storage; if the database is down, let a later head check retry."""
        try:
            await self._stream(request_id, "push", after=self.sequencer.cursor)
        except DatabaseError:
            logger.warning("could not catch a socket of store %r up: the database is unavailable", self.store_id)
            get_hub().repair_later(self.store_id)

    async def _admin_allowed(self, message):
        secret = conf.admin_secret()
        if secret is None:
            await self.send_message(
                protocol.Error(requestId=message.requestId, message="Admin frames are disabled on this server")
            )
            return False
        if hmac.compare_digest(message.adminSecret.encode(), secret.encode()):
            return True
        await self.send_message(protocol.Error(requestId=message.requestId, message="Invalid admin secret"))
        return False

    async def _admin_reset(self, message):
        if not await self._admin_allowed(message):
            return
        await eventlog.reset(self.store_id, origin=self.socket_id)
        self.sequencer.forget()
        await self.send_message(protocol.AdminResetRoomRes(requestId=message.requestId))

    async def livesync_head(self, message):
        """The hub saw the store's head move without a broadcast reaching us: catch up from storage."""
        cursor = self.sequencer.cursor
        if cursor is not None and cursor < message["head"]:
            await self._repair(CATCH_UP_REQUEST_ID)

    async def _admin_info(self, message):
        if not await self._admin_allowed(message):
            return
        info = protocol.DurableObjectInfo(durableObjectId=storage.store_identifier(self.store_id))
        await self.send_message(protocol.AdminInfoRes(requestId=message.requestId, info=info))

    _handlers = {
        protocol.Ping: _ping,
        protocol.PullReq: _pull,
        protocol.PushReq: _push,
        protocol.AdminResetRoomReq: _admin_reset,
        protocol.AdminInfoReq: _admin_info,
    }
