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
from channels.utils import await_many_dispatch

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

    async def __call__(self, scope, receive, send):
        """Channels' consumer loop, fed by the client and the hub inbox, with a graceful cancel.

        Daphne cancels every application on SIGTERM; pushes in flight are then
        finished and the socket closed with 1012.
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
        # Unlike Channels' dispatch, no close_old_connections() per message: these
        # consumers never touch the ORM on the event loop (syncapp.db does).
        await getattr(self, message["type"].replace(".", "_"))(message)

    def run_push(self, coroutine):
        """Run a push so that neither a shutdown nor a closing client can cut it between commit and answer."""
        task = asyncio.ensure_future(coroutine)
        self.pushes_in_flight.add(task)
        task.add_done_callback(self.pushes_in_flight.discard)
        return asyncio.shield(task)

    async def _close_for_shutdown(self, receive):
        if self.pushes_in_flight:
            await asyncio.wait(list(self.pushes_in_flight), timeout=SHUTDOWN_GRACE_SECONDS)
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
                generation=self.generation,
            )
        except handshake.Refused as refused:
            await self._refuse(refused)
            return
        self.connected_to_store()
        await get_hub().join(self.store_id, self)
        self.joined = True
        await self.accept()
        await eventlog.note_client(self.store_id, self.generation)

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


async def _until_disconnected(receive):
    while (await receive())["type"] != "websocket.disconnect":
        pass
