"""The 0.3 sync endpoint: one WebSocket consumer per client socket.

The store's channel-layer group is the Durable Object analogue: each committed
push is announced to it as one pre-encoded ``PullRes`` frame, and the process's
hub (``syncapp.hub``) hands store messages to each socket's bounded inbox.
Storage is reached only through ``syncapp.storage`` run on the database pool
(``syncapp.db``); this module knows no SQL.
"""

import asyncio
import hmac
import logging
import uuid

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.utils import await_many_dispatch
from django.db import DatabaseError

from . import broadcast, conf, db, handshake, protocol, storage
from .hub import get_hub
from .sequencer import DROP, FORWARD, Sequencer

logger = logging.getLogger("syncapp")

# Close codes; LiveStore clients reconnect after any close.
# The store was reset, or the server is shutting down: "Service Restart".
CLOSE_SERVICE_RESTART = 1012
# The socket fell more than SOCKET_QUEUE_SIZE store messages behind: "Try Again Later".
CLOSE_TOO_SLOW = 1013
# requestId of the push-context PullRes that repairs a socket outside any request.
CATCH_UP_REQUEST_ID = "livesync-catch-up"
# PullRes chunks produced from one database read.
PAGES_PER_READ = 10
# How long a shutdown waits for a push in flight to commit and be acknowledged.
SHUTDOWN_GRACE_SECONDS = 10
# How long a shutdown waits for a client to answer the 1012 close frame.
SHUTDOWN_CLOSE_SECONDS = 2


class HookRejected(Exception):
    """An ON_PUSH / ON_PULL (or *_RES) hook raised: the request is answered with its message."""


def _args_text(event):
    return None if event.args is protocol.UNSET else bytes(event.args).decode()


class SyncConsumer(AsyncWebsocketConsumer):
    """``@livestore/sync-cf`` 0.3 protocol at ``…/websocket?storeId=…&payload=…``.

    ``SyncConsumer.as_asgi(validate_payload=callable_or_import_string)`` overrides
    ``LIVESYNC["VALIDATE_PAYLOAD"]`` for one mount.
    """

    validate_payload = None
    # Store messages come from the process's hub, not from a channel of our own.
    channel_layer_alias = None

    def __init__(self, *args, validate_payload=None, **kwargs):
        super().__init__(*args, **kwargs)
        if validate_payload is not None:
            self.validate_payload = validate_payload
        self.store_id = None
        self.joined = False
        self.in_flight = None
        self.socket_id = uuid.uuid4().hex

    async def __call__(self, scope, receive, send):
        """Channels' consumer loop, fed by the client and the hub inbox, with a graceful cancel.

        Daphne cancels every application on SIGTERM; a push in flight is then
        finished (committed and acknowledged) and the socket closed with 1012 so
        the client reconnects to another process.
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        self.inbox = asyncio.Queue()
        try:
            await await_many_dispatch([receive, self.inbox.get], self.dispatch)
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            await self._close_for_shutdown(receive)
            raise
        finally:
            await self._leave_store()

    async def dispatch(self, message):
        # Unlike Channels' dispatch, no close_old_connections() per message: this
        # consumer never touches the ORM on the event loop (syncapp.db does).
        await getattr(self, message["type"].replace(".", "_"))(message)

    async def _close_for_shutdown(self, receive):
        if self.in_flight is not None and not self.in_flight.done():
            await asyncio.wait([self.in_flight], timeout=SHUTDOWN_GRACE_SECONDS)
        if self.joined:
            try:
                await self.close(code=CLOSE_SERVICE_RESTART)
                # Daphne drops every connection once the applications are done, buffered frames included:
                # wait for the client's answer to the close frame, so the 1012 reaches it.
                await asyncio.wait_for(_until_disconnected(receive), SHUTDOWN_CLOSE_SECONDS)
            except Exception:  # noqa: BLE001 - the connection may already be gone
                pass

    def deliver(self, message):
        """Called by the hub: queue a store message, or drop the socket if it is too far behind."""
        if self.inbox.qsize() >= conf.get("SOCKET_QUEUE_SIZE"):
            # The backlog is dropped: the socket is closed, and its client catches up after reconnecting.
            while not self.inbox.empty():
                self.inbox.get_nowait()
            self.inbox.put_nowait({"type": "livesync.overflow"})
            return
        self.inbox.put_nowait(message)

    async def livesync_overflow(self, message):
        logger.warning(
            "closing a socket of store %r: more than %s messages behind", self.store_id, conf.get("SOCKET_QUEUE_SIZE")
        )
        await self.close(code=CLOSE_TOO_SLOW)
        await self._leave_store()

    async def websocket_connect(self, message):
        try:
            self.store_id, _payload = await handshake.check(
                self.scope.get("query_string", b""),
                handshake.scope_origin(self.scope),
                self.scope,
                self.validate_payload,
            )
        except handshake.Refused as refused:
            await self._refuse(refused)
            return
        self.sequencer = Sequencer()
        await get_hub().join(self.store_id, self)
        self.joined = True
        await self.accept()

    async def _refuse(self, refused):
        """Answer with the reference's status and text where the server allows it.

        The ASGI ``websocket.http.response`` extension (uvicorn) lets a consumer
        answer the handshake with any HTTP response; without it (daphne) closing
        before accepting is all there is, which the server answers with 403.
        """
        if "websocket.http.response" in self.scope.get("extensions", {}):
            await self.send_denial(refused)
        else:
            await self.close()

    async def send_denial(self, refused):
        await super(AsyncWebsocketConsumer, self).send(
            {
                "type": "websocket.http.response.start",
                "status": refused.status,
                "headers": [(b"content-type", b"text/plain;charset=UTF-8")],
            }
        )
        await super(AsyncWebsocketConsumer, self).send(
            {"type": "websocket.http.response.body", "body": refused.body.encode()}
        )

    async def disconnect(self, code):
        await self._leave_store()

    async def _leave_store(self):
        if self.joined:
            self.joined = False
            await get_hub().leave(self.store_id, self)

    async def send_message(self, message):
        await self.send(text_data=protocol.encode(message))

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            await self.send_message(protocol.Error(requestId="", message="Binary frames are not supported"))
            return
        limit = conf.get("MAX_MESSAGE_BYTES")
        if len(text_data) > limit // 4 and len(text_data.encode()) > limit:
            await self.send_message(
                protocol.Error(
                    requestId=protocol.peek_request_id(text_data) or "",
                    message=f"Message too large: more than {limit} bytes",
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
                # Shielded: a shutdown waits for the push to commit and be acknowledged.
                self.in_flight = asyncio.ensure_future(handler(self, message))
                await asyncio.shield(self.in_flight)
            else:
                await handler(self, message)
        except Exception:
            # A bug must cost one request, not the socket: answer and keep serving.
            logger.exception("%s failed for store %r", type(message).__name__, self.store_id)
            await self.send_message(protocol.Error(requestId=message.requestId, message="Internal server error"))

    async def _ping(self, message):
        await self.send_message(protocol.Pong())

    async def _run_hook(self, name, message):
        hook = conf.hook(name)
        if hook is None:
            return
        try:
            await hook(protocol.to_builtins(message))
        except Exception as exc:
            raise HookRejected(str(exc)) from exc

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
        """
        chunk_size = conf.get("PULL_CHUNK_SIZE")
        while True:
            # One database read serves several chunks; memory stays bounded by the page.
            page = await db.run(storage.read_page, self.store_id, after, chunk_size * PAGES_PER_READ)
            if not page.events and context == "pull":
                await self._send_pull_res(protocol.pull_res([], context, request_id, page.remaining))
            for start in range(0, len(page.events), chunk_size):
                chunk = page.events[start : start + chunk_size]
                after = chunk[-1].seq_num
                items = [(_wire_event(stored), stored.created_at) for stored in chunk]
                await self._send_pull_res(protocol.pull_res(items, context, request_id, max(0, page.head - after)))
            if page.remaining == 0:
                break
        self.sequencer.sent(after)

    async def _send_pull_res(self, message):
        await self._run_hook("ON_PULL_RES", message)
        await self.send_message(message)

    async def _push_res(self, message):
        await self._run_hook("ON_PUSH_RES", message)
        await self.send_message(message)

    async def _push(self, message):
        request_id = message.requestId
        if not message.batch:
            await self._push_res(protocol.PushAck(requestId=request_id))
            return
        try:
            await self._run_hook("ON_PUSH", message)
            created_at = await db.run(storage.append, self.store_id, message.batch, _args_text)
        except storage.ParentMismatch as mismatch:
            await self._reject_stale_push(request_id, mismatch)
            return
        except storage.BrokenChain as exc:
            await self._push_res(protocol.Error(requestId=request_id, message=str(exc)))
            return
        except DatabaseError:
            logger.exception("push failed for store %r", self.store_id)
            # The error may have come after the database committed (a connection lost during COMMIT):
            # look before answering, so a stored batch is acknowledged and a lost one is not.
            created_at = await self._committed_anyway(message.batch)
            if not created_at:
                outcome = "nothing was stored" if created_at is False else "it may have been stored"
                await self._push_res(
                    protocol.Error(requestId=request_id, message=f"Push failed: the database is unavailable; {outcome}")
                )
                return
        except HookRejected as exc:
            await self._push_res(protocol.Error(requestId=request_id, message=str(exc)))
            return
        self.sequencer.client_has(message.batch[0].parentSeqNum)
        await self._push_res(protocol.PushAck(requestId=request_id))
        await self._broadcast(request_id, message.batch, created_at)

    async def _committed_anyway(self, batch):
        """createdAt of ``batch`` if the store holds it after all, False if it does not, None if unknown."""
        try:
            page = await db.run(storage.read_page, self.store_id, batch[0].parentSeqNum, len(batch))
        except DatabaseError:
            return None
        stored = [(e.seq_num, e.parent_seq_num, e.name, e.args, e.client_id, e.session_id) for e in page.events]
        pushed = [(e.seqNum, e.parentSeqNum, e.name, _args_text(e), e.clientId, e.sessionId) for e in batch]
        if stored == pushed:
            return page.events[0].created_at
        return False

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

    async def _broadcast(self, request_id, batch, created_at):
        frame = protocol.pull_res([(event, created_at) for event in batch], "push", request_id, 0)
        await self._run_hook("ON_PULL_RES", frame)
        await broadcast.announce_events(
            self.store_id, protocol.encode(frame), batch[0].seqNum, batch[-1].seqNum, request_id
        )

    async def livesync_events(self, event):
        """A push committed to this store (by any socket in any process)."""
        decision = self.sequencer.on_broadcast(event["first"], event["last"])
        if decision == FORWARD:
            await self.send(text_data=event["frame"])
        elif decision != DROP:
            await self._repair(event["request_id"])

    async def _repair(self, request_id):
        """Send this socket what it lacks from storage; if the database is down, let a later head check retry."""
        try:
            await self._stream(request_id, "push", after=self.sequencer.cursor)
        except DatabaseError:
            logger.warning("could not catch a socket of store %r up: the database is unavailable", self.store_id)
            get_hub().repair_later(self.store_id)

    async def _admin_allowed(self, message):
        secret = conf.get("ADMIN_SECRET")
        if hmac.compare_digest(message.adminSecret.encode(), secret.encode()):
            return True
        await self.send_message(protocol.Error(requestId=message.requestId, message="Invalid admin secret"))
        return False

    async def _admin_reset(self, message):
        if not await self._admin_allowed(message):
            return
        await db.run(storage.reset, self.store_id)
        self.sequencer.forget()
        await broadcast.announce_reset(self.store_id, origin=self.socket_id)
        await self.send_message(protocol.AdminResetRoomRes(requestId=message.requestId))

    async def livesync_reset(self, message):
        """The store was reset: other sockets hold a history that no longer exists."""
        if message.get("origin_socket") != self.socket_id:
            await self.close(code=CLOSE_SERVICE_RESTART)
            await self._leave_store()

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


async def _until_disconnected(receive):
    while (await receive())["type"] != "websocket.disconnect":
        pass


def _wire_event(stored):
    return protocol.Event(
        name=stored.name,
        args=protocol.NULL_ARGS if stored.args is None else protocol.Raw(stored.args.encode()),
        seqNum=stored.seq_num,
        parentSeqNum=stored.parent_seq_num,
        clientId=stored.client_id,
        sessionId=stored.session_id,
    )
