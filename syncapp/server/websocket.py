"""What every sync WebSocket shares, whichever protocol generation it speaks.

A socket belongs to one store. It is fed by two sources, as in Channels'
``AsyncConsumer``: the client (ASGI ``receive``) and the process's hub
(``syncapp.fanout.hub``), which hands it the store's messages through a bounded
inbox. On shutdown, pushes in flight are finished (committed and answered)
before the socket is closed with 1012 so the client reconnects elsewhere.
"""

import asyncio
import logging
import uuid

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.sessions import InstanceSessionWrapper

from .. import conf, logcontext, metrics
from ..core import eventlog
from ..fanout.hub import get_hub
from . import daphne_compat, handshake, limits, mounts, revocation

logger = logging.getLogger("syncapp")

# Close codes; LiveStore clients reconnect after any close.
# The socket's access is gone (its validator refuses it now, its session logged out, its token expired): the
# client reconnects and is refused at the handshake (see syncapp.server.revocation). Not RFC 6455's 1008 (policy
# violation): daphne (autobahn) sends only 1000 and 3000-4999 from a consumer. 4000 + HTTP's 403 Forbidden.
CLOSE_ACCESS_REVOKED = 4403
# Writing to the socket failed: its client must not wait for frames that will never come.
CLOSE_INTERNAL_ERROR = 1011
# The store was reset, or the server is shutting down: "Service Restart".
CLOSE_SERVICE_RESTART = 1012
# The socket fell more than SOCKET_QUEUE_SIZE messages, or SOCKET_WRITE_BUFFER_BYTES unsent bytes, behind:
# "Try Again Later".
CLOSE_TOO_SLOW = 1013
# Unsent bytes above which a pull waits for its client to read before sending its next page.
PULL_PAUSE_BYTES = 1_000_000
# How often a paused pull looks again, at the most.
PULL_PAUSE_POLL_SECONDS = 0.1
# How long a shutdown waits for pushes in flight to commit and be acknowledged.
SHUTDOWN_GRACE_SECONDS = 10
# How long a shutdown waits for a client to answer the 1012 close frame.
SHUTDOWN_CLOSE_SECONDS = 2


class ClientGone(Exception):
    """The socket is closing or closed: what it was sending can stop."""


def frame_sender(send):
    """The ASGI ``send`` a WebSocket frame can take: ``send`` past Channels' session middleware.

    ``SessionMiddleware`` (in ``AuthMiddlewareStack``) wraps ``send`` to save
    the session and set its cookie on ``http.response.start``; for every
    other message it only reads the session, then passes the message on. On
    frames that is all it does, and it cost a fan-out to 200 sockets about a
    tenth of daphne's CPU. Only that wrapper is passed over: any other
    middleware's ``send`` stays on every frame's way.
    """
    while type(getattr(send, "__self__", None)) is InstanceSessionWrapper:
        send = send.__self__.real_send
    return send


class StoreSocketConsumer(AsyncWebsocketConsumer):
    """Base of the sync consumers: handshake, hub membership, inbox, graceful shutdown.

    Subclasses set ``generation`` (``syncapp.protocol.generations``), handle frames in
    ``receive`` and store messages in ``livesync_events`` / ``livesync_head``.
    ``as_asgi(validate_payload=callable_or_import_string)`` overrides
    ``LIVESYNC["VALIDATE_PAYLOAD"]`` for one mount.
    """

    generation: str | None = None
    validate_payload = None
    # Store messages come from the process's hub, not from a channel of our own (Channels' stubs type the alias
    # as str; None gets no layer at run time).
    channel_layer_alias = None  # type: ignore[assignment]

    @classmethod
    def as_asgi(cls, **initkwargs):
        conf.check_override("validate_payload", initkwargs.get("validate_payload"))
        mounts.record(f"{cls.generation} websocket", initkwargs.get("validate_payload"))
        return super().as_asgi(**initkwargs)

    def __init__(self, *args, validate_payload=None, **kwargs):
        super().__init__(*args, **kwargs)
        if validate_payload is not None:
            self.validate_payload = validate_payload
        self.store_id = None
        # The SyncContext the handshake accepted (store, user, read-only or not), handed to the hooks.
        self.context = None
        self.joined = False
        self.pushes_in_flight = set()
        self.socket_id = uuid.uuid4().hex
        # Client messages and store messages, in the order they came.
        self.inbox = asyncio.Queue()
        # Held while a message is handled: a store message is written at once only when it is free.
        self.turn = asyncio.Lock()
        # Set once the server decided to close the socket: nothing more is queued or sent for it.
        self.closing = False
        self._closing_tasks = set()
        # The server's view of bytes written but not yet taken by the client (daphne only; see daphne_compat).
        self.write_buffer = None
        # The connection counts the socket holds (``limits``), and its watch over its access (``revocation``).
        self.connection_slots = limits.ConnectionSlots()
        self.guard = None

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
        self.send_frame = frame_sender(send)
        self.write_buffer = scope.get("extensions", {}).get(daphne_compat.WRITE_BUFFER_EXTENSION)
        client_messages = asyncio.ensure_future(self._queue_client_messages(receive))
        try:
            while True:
                message = await self.inbox.get()
                async with self.turn:
                    await self._dispatch_isolated(message)
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
            if message["type"] == "websocket.disconnect":
                self.inbox.put_nowait(message)
                return
            if self.inbox.qsize() >= conf.get("SOCKET_QUEUE_SIZE"):
                # A client that sends faster than it is served (a flood of pulls, say) is not buffered without end.
                self.close_soon(CLOSE_TOO_SLOW, "more than SOCKET_QUEUE_SIZE messages waiting")
            if not self.closing:
                self.inbox.put_nowait(message)

    async def _dispatch_isolated(self, message):
        """Handle one message; a failure closes this socket (its client reconnects) and nothing else."""
        try:
            await self.dispatch(message)
        except StopConsumer:
            raise
        except ClientGone:
            pass
        except Exception:
            logger.exception("a socket of store %r failed on %s: closing it", self.store_id, message["type"])
            self.close_soon(CLOSE_INTERNAL_ERROR)

    async def dispatch(self, message):
        # Unlike Channels' dispatch, no close_old_connections() per message: these
        # consumers never touch the ORM on the event loop (syncapp.storage.db does).
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
            except Exception:  # noqa: BLE001, S110 - the connection may already be gone
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
        its answer (``receive_own``). Anything else waits in the inbox, in order.

        Never raises: a socket that cannot be written to is closed, so that its
        client reconnects from what it has, and the hub goes on with the next.
        """
        if self.closing:
            return
        try:
            if not self.inbox.empty():
                self.deliver(message)
            elif message.get("origin_socket") == self.socket_id:
                # This socket's own push, announced by its own handler (which holds the turn): the echo
                # leaves with the push's answer.
                await self.receive_own(message)
            elif not self.turn.locked():
                async with self.turn:
                    await self._write_at_once(message)
            else:
                self.deliver(message)
        except Exception:
            logger.exception("could not write to a socket of store %r: closing it", self.store_id)
            self.close_soon(CLOSE_INTERNAL_ERROR)

    async def receive_own(self, message):
        """A store message announcing this socket's own push, in the push's handler: written at once if it
        needs no I/O, else in turn."""
        await self._write_at_once(message)

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
        """Queue a store message, or close the socket if it is too far behind."""
        if self.inbox.qsize() >= conf.get("SOCKET_QUEUE_SIZE"):
            self.close_soon(CLOSE_TOO_SLOW, f"more than {conf.get('SOCKET_QUEUE_SIZE')} messages behind")
            # Its store backlog goes (the client's own messages stay): its client catches up after reconnecting.
            waiting = [self.inbox.get_nowait() for _ in range(self.inbox.qsize())]
            for kept in waiting:
                if kept["type"].startswith("websocket."):
                    self.inbox.put_nowait(kept)
            return
        self.inbox.put_nowait(message)

    async def send(self, text_data=None, bytes_data=None, close=False):
        if text_data is not None and not close:
            await self.send_frame({"type": "websocket.send", "text": text_data})
        else:
            await super().send(text_data, bytes_data, close)
        limit = conf.get("SOCKET_WRITE_BUFFER_BYTES")
        if self.write_buffer is not None and not self.closing and self.write_buffer.pending_bytes() > limit:
            self.close_soon(CLOSE_TOO_SLOW, f"more than {limit} bytes unsent")

    async def writable(self):
        """Wait until the client has taken most of what was sent to it; ClientGone once the socket is closing.

        Pulls call this between pages, so a client that reads slowly (or never)
        holds one page of server memory, not its whole backlog. Daphne's send
        never waits for the client; under other servers ``send`` itself does,
        and there is nothing to wait for here.
        """
        if self.closing:
            raise ClientGone
        buffer = self.write_buffer
        if buffer is None:
            return
        # First a bare yield: a pull's frames pile up only because the event loop has not run the writes yet.
        delay = 0
        while buffer.pending_bytes() > PULL_PAUSE_BYTES:
            if self.closing or buffer.closed():
                raise ClientGone
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.001), PULL_PAUSE_POLL_SECONDS)

    def close_soon(self, code, reason=None):
        """Close the socket with ``code`` from any task, at once, whatever its own loop is doing."""
        if self.closing:
            return
        self.closing = True
        if reason is not None:
            logger.warning("closing a socket of store %r with %s: %s", self.store_id, code, reason)
        task = asyncio.ensure_future(self._close_and_leave(code))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    async def _close_and_leave(self, code):
        try:
            await self.close(code=code)
        finally:
            await self._leave_store()

    async def websocket_connect(self, message):
        logcontext.bind(
            request_id=self.socket_id, generation=self.generation, client=logcontext.client_address(self.scope)
        )
        try:
            # The address's cap before the validator runs: a flood of connections from one address costs no
            # validation past it.
            await self._take_slot(self.connection_slots.take_address(self.scope))
            self.context = await handshake.check(
                self.scope.get("query_string", b""),
                handshake.scope_origin(self.scope),
                self.scope,
                self.validate_payload,
                generation=self.generation,
            )
            await self._take_slot(self.connection_slots.take_client(self.context), self.context.store_id)
        except handshake.Refused as refused:
            await self.connection_slots.release()
            handshake.log_refused(refused, self.scope, self.generation)
            metrics.HANDSHAKES.labels(self.generation, "ws", refused.reason).inc()
            await self._refuse(refused)
            return
        metrics.HANDSHAKES.labels(self.generation, "ws", "accepted").inc()
        self.store_id = self.context.store_id
        self.connected_to_store()
        await get_hub().join(self.store_id, self)
        self.joined = True
        metrics.SOCKETS.labels(self.generation).inc()
        await self.accept()
        self.guard = revocation.watch(self)
        eventlog.note_client(self.store_id, self.generation)

    @staticmethod
    async def _take_slot(taking, store_id=None):
        """Await a ``ConnectionSlots.take_*``; a cap it passes refuses the handshake (429 where it can say so)."""
        try:
            await taking
        except limits.TooManyConnections as exc:
            raise handshake.Refused(429, str(exc), store_id, reason="too_many_connections") from None

    def revoke(self, reason):
        """Close the socket because its access was taken away (``reason`` is logged); its client reconnects and is
        refused at the handshake."""
        self.close_soon(CLOSE_ACCESS_REVOKED, f"access revoked: {reason}")

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
        guard, self.guard = self.guard, None
        if guard is not None:
            guard.stop()
        await self.connection_slots.release()
        if self.joined:
            self.joined = False
            metrics.SOCKETS.labels(self.generation).dec()
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
