"""What every sync WebSocket shares, whichever protocol generation it speaks.

A socket belongs to one store. It is fed by two sources, as in Channels'
``AsyncConsumer``: the client (ASGI ``receive``) and the process's hub
(``syncapp.hub``), which hands it the store's messages through a bounded
inbox. On shutdown, pushes in flight are finished (committed and answered)
before the socket is closed with 1012 so the client reconnects elsewhere.
"""

import asyncio
import logging
import uuid

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from . import conf, eventlog, handshake
from .hub import get_hub

logger = logging.getLogger("syncapp")

# Close codes; LiveStore clients reconnect after any close.
# The store was reset, or the server is shutting down: "Service Restart".
CLOSE_SERVICE_RESTART = 1012
# The socket fell more than SOCKET_QUEUE_SIZE store messages behind: "Try Again Later".
CLOSE_TOO_SLOW = 1013
# How long a shutdown waits for pushes in flight to commit and be acknowledged.
SHUTDOWN_GRACE_SECONDS = 10
# How long a shutdown waits for a client to answer the 1012 close frame.
SHUTDOWN_CLOSE_SECONDS = 2


class StoreSocketConsumer(AsyncWebsocketConsumer):
    """Base of the sync consumers: handshake, hub membership, inbox, graceful shutdown.

    Subclasses set ``generation`` ("0.3" or "0.4"), handle frames in
    ``receive`` and store messages in ``livesync_events`` / ``livesync_head``.
    ``as_asgi(validate_payload=callable_or_import_string)`` overrides
    ``LIVESYNC["VALIDATE_PAYLOAD"]`` for one mount.
    """

    generation = None
    validate_payload = None
    # Store messages come from the process's hub, not from a channel of our own.
    channel_layer_alias = None

    def __init__(self, *args, validate_payload=None, **kwargs):
        super().__init__(*args, **kwargs)
        if validate_payload is not None:
            self.validate_payload = validate_payload
        self.store_id = None
        self.joined = False
        self.pushes_in_flight = set()
        self.socket_id = uuid.uuid4().hex
        # Client messages and store messages, in the order they came.
        self.inbox = asyncio.Queue()
        # Held while a message is handled: a store message is written at once only when it is free.
        self.turn = asyncio.Lock()
        # True while this socket's own push is announced, so that its echo is written at once.
        self.announcing = False

    async def __call__(self, scope, receive, send):
        """Channels' consumer loop on one queue, fed by the client and the hub, with a graceful cancel.

        Channels' ``await_many_dispatch`` waits on the client and the channel
        layer with ``asyncio.wait`` per message; one queue costs a fraction of
        that, which counts when a push fans out to hundreds of sockets. Daphne
        cancels every application on SIGTERM; pushes in flight are then
        finished and the socket closed with 1012.
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        client_messages = asyncio.ensure_future(self._queue_client_messages(receive))
        try:
            while True:
                message = await self.inbox.get()
                async with self.turn:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            await self._close_for_shutdown()
            raise
        finally:
            client_messages.cancel()
            await self._leave_store()

    async def _queue_client_messages(self, receive):
        while True:
            message = await receive()
            self.inbox.put_nowait(message)
            if message["type"] == "websocket.disconnect":
                return

    async def dispatch(self, message):
        # Unlike Channels' dispatch, no close_old_connections() per message: these
        # consumers never touch the ORM on the event loop (syncapp.db does).
        await getattr(self, message["type"].replace(".", "_"))(message)

    def run_push(self, coroutine):
        """Run a push so that neither a shutdown nor a closing client can cut it between commit and answer."""
        task = asyncio.ensure_future(coroutine)
        self.pushes_in_flight.add(task)
        task.add_done_callback(self.pushes_in_flight.discard)
        return asyncio.shield(task)

    async def _close_for_shutdown(self):
        if self.pushes_in_flight:
            await asyncio.wait(list(self.pushes_in_flight), timeout=SHUTDOWN_GRACE_SECONDS)
        if self.joined:
            try:
                await self.close(code=CLOSE_SERVICE_RESTART)
                # Daphne drops every connection once the applications are done, buffered frames included:
                # wait for the client's answer to the close frame, so the 1012 reaches it.
                await asyncio.wait_for(self._until_disconnected(), SHUTDOWN_CLOSE_SECONDS)
            except Exception:  # noqa: BLE001 - the connection may already be gone
                pass

    async def _until_disconnected(self):
        while (await self.inbox.get())["type"] != "websocket.disconnect":
            pass

    async def offer(self, message):
        """Called by the hub with each store message: written at once if the socket is idle, else queued.

        A socket with nothing queued and nothing being handled, for which the
        message means frames it can tell without I/O (``frames_for``), gets them
        written by the task that announced the push: a push reaches many idle
        sockets without a task switch each, and a pusher's own echo leaves with
        its acknowledgement. Anything else waits in the inbox, in order.
        """
        if not self.inbox.empty():
            self.deliver(message)
        elif self.announcing:
            await self._write_at_once(message)
        elif not self.turn.locked():
            async with self.turn:
                await self._write_at_once(message)
        else:
            self.deliver(message)

    async def _write_at_once(self, message):
        frames = self.frames_for(message)
        if frames is None:
            self.deliver(message)
            return
        for frame in frames:
            await self.send(text_data=frame)

    def frames_for(self, message):
        """The frames a store message means to this socket, if that needs no I/O; None to handle it in turn.

        May move the socket's position: the caller sends the frames.
        """
        return None

    def deliver(self, message):
        """Queue a store message, or drop the socket if it is too far behind."""
        if self.inbox.qsize() >= conf.get("SOCKET_QUEUE_SIZE"):
            # The store's backlog is dropped (the client's own messages stay): the socket is closed, and its
            # client catches up after reconnecting.
            backlog = [self.inbox.get_nowait() for _ in range(self.inbox.qsize())]
            self.inbox.put_nowait({"type": "livesync.overflow"})
            for waiting in backlog:
                if waiting["type"].startswith("websocket."):
                    self.inbox.put_nowait(waiting)
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
                generation=self.generation,
            )
        except handshake.Refused as refused:
            await self._refuse(refused)
            return
        self.connected_to_store()
        await get_hub().join(self.store_id, self)
        self.joined = True
        await self.accept()
        eventlog.note_client(self.store_id, self.generation)

    def connected_to_store(self):
        """Set up per-socket state once the handshake is accepted (before any store message arrives)."""

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

    async def websocket_disconnect(self, message):
        # Channels' own, without its groups (these sockets have none) and without
        # aclose_old_connections(), which costs a trip to the sync thread per socket
        # and concerns ORM connections these consumers never open on the event loop.
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code):
        await self._leave_store()

    async def _leave_store(self):
        if self.joined:
            self.joined = False
            await get_hub().leave(self.store_id, self)

    def too_large(self, text_data):
        """Whether a frame exceeds MAX_MESSAGE_BYTES (counted in bytes only when it could)."""
        limit = conf.get("MAX_MESSAGE_BYTES")
        return len(text_data) > limit // 4 and len(text_data.encode()) > limit

    async def livesync_reset(self, message):
        """The store was reset: other sockets hold a history that no longer exists."""
        if message.get("origin_socket") != self.socket_id:
            await self.close(code=CLOSE_SERVICE_RESTART)
            await self._leave_store()
