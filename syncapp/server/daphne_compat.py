"""What livesync needs of daphne (4.2.3) beyond ASGI: two fixes, a write-buffer view, a header deadline,
writes sent at once and a garbage collector that skips what lives from the start.

``install()`` runs in every process that installs ``syncapp``, so each item says what it changes for the
host's own routes, which it serves beside livesync's: nothing a route or its client can observe, or, for
the header deadline and the frozen objects, a bound no well-behaved client or program meets.

1. autobahn's ``sendClose`` refuses every close code but 1000 and 3000-4999, so
   daphne cannot send 1012 (service restart) or 1013 (try again later): the
   consumer's ``close(code=1012)`` raises instead. Send those through autobahn's
   ``sendCloseFrame``, which daphne itself uses for 1011. Only the codes that
   raised change: every other close takes daphne's own path.
2. ``Server.kill_all_applications`` (the SIGTERM path) reads
   ``details["application_instance"]`` for every connection, but an HTTP request
   that was upgraded to a WebSocket stays in ``connections`` without one until
   the next ``application_checker`` tick (1 s): a SIGTERM within a second of any
   handshake raises KeyError, no application is cancelled, and every socket is
   dropped without a close frame. And it waits for the cancelled applications
   with a plain ``asyncio.gather``, which returns as soon as the first of them
   ends (a cancelled task ends by raising CancelledError): the reactor then
   drops every other connection while its application is still closing it.
   Every application, the host's too, is cancelled and waited for, as daphne's
   own comment there says it means to.
3. ASGI's ``send`` under daphne never waits for the client: a frame is
   appended to Twisted's write buffer whether the client reads or not, so a
   client that pulls a large store and never reads would make the server hold
   the whole backlog. Each WebSocket's scope gets a ``WriteBuffer`` (extension
   ``WRITE_BUFFER_EXTENSION``) through which a consumer sees the bytes not yet
   taken by the client, and pauses or closes the socket (``syncapp.server.websocket``).
   A consumer that does not look for the extension is not affected by it.
4. Twisted's HTTP channel times out only a connection that sends nothing for
   60 s, so a client that trickles an upgrade request's headers holds a
   connection forever. A connection that has not sent a request's headers
   within ``LIVESYNC["REQUEST_HEADER_TIMEOUT"]`` seconds is dropped. The body
   is not timed: a slow upload to a host's view is the host's business. The
   deadline holds for every path: which routes are livesync's is decided by the
   project's ASGI routing once the headers are in (0.4 clients on the query),
   and a connection stuck in its headers costs the process a socket whatever
   path it names.
5. Twisted sends nothing when asked to: ``write`` appends to the connection's
   buffer and registers the socket for writing, and the reactor's next turn
   sends the buffer and unregisters it. On daphne's asyncio reactor that is two
   ``epoll_ctl`` calls and a reactor dispatch for every frame: about a fifth
   of daphne's CPU when one push fans out to 200 sockets. A write to a
   connection with nothing waiting before it is sent at once; what the socket
   does not take is buffered as before, so the order of bytes, the write-buffer
   view (3.) and a client that stops reading behave as they did. Every served
   connection's bytes leave the same, only sooner.
6. A full garbage collection walks every object the process tracks, and a
   Django project under daphne tracks over 100,000 from its start: 55-70 ms
   per full collection on the bench's machine, during which no socket of the
   process is served. The objects a long pull or a burst of connections
   allocates set one off every few such pulls or bursts. When the reactor
   starts, the objects alive then are collected once and frozen
   (``gc.freeze``), so later collections walk only what was allocated since
   (``LIVESYNC["FREEZE_STARTUP_OBJECTS"]``). Frozen objects are still freed when
   their last reference goes; only a reference cycle among them that becomes
   garbage later is kept, which the size of the start-up heap bounds.
"""

import asyncio
import gc
import logging

WRITE_BUFFER_EXTENSION = "livesync.write_buffer"


class WriteBuffer:
    """The bytes a connection's transport holds that its client has not taken yet."""

    def __init__(self, protocol):
        self._protocol = protocol

    def pending_bytes(self):
        transport = self._protocol.transport
        if transport is None:
            return 0
        # Twisted's FileDescriptor: the unsent part of dataBuffer, plus writes not yet joined into it.
        data = getattr(transport, "dataBuffer", b"")
        return len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)

    def closed(self):
        transport = self._protocol.transport
        return transport is None or not getattr(transport, "connected", True)


REGISTERED_CLOSE_CODES = {1001, 1011, 1012, 1013, 1014}


def install():
    try:
        from daphne.http_protocol import HTTPFactory, WebRequest
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    from twisted.internet import defer, reactor

    if getattr(WebSocketProtocol, "_livesync_patched", False):
        return

    original_server_close = WebSocketProtocol.serverClose

    def serverClose(self, code=None):
        if code in REGISTERED_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            original_server_close(self, code)

    def kill_all_applications(self):
        wait_for = []
        for details in self.connections.values():
            application_instance = details.get("application_instance")
            if application_instance is not None and not application_instance.done():
                application_instance.cancel()
                wait_for.append(application_instance)
        logging.getLogger("daphne.server").info("Killed %i pending application instances", len(wait_for))
        wait_deferred = defer.Deferred.fromFuture(asyncio.gather(*wait_for, return_exceptions=True))
        wait_deferred.addErrback(lambda x: None)
        return wait_deferred

    original_create_application = Server.create_application

    def create_application(self, protocol, scope):
        # Only sync WebSockets read it (3. above): an HTTP request's scope stays as daphne makes it.
        if scope["type"] == "websocket":
            extensions = {**scope.get("extensions", {}), WRITE_BUFFER_EXTENSION: WriteBuffer(protocol)}
            scope = {**scope, "extensions": extensions}
        return original_create_application(self, protocol, scope)

    original_got_length = WebRequest.gotLength

    def gotLength(self, length):
        # Twisted's channel calls it once the request's headers are all in, before any of its body.
        self.channel.livesync_headers_received = True
        return original_got_length(self, length)

    original_build_protocol = HTTPFactory.buildProtocol

    def buildProtocol(self, addr):
        protocol = original_build_protocol(self, addr)
        if protocol is not None:
            reactor.callLater(_header_timeout(), _drop_if_incomplete, protocol)
        return protocol

    WebSocketProtocol.serverClose = serverClose
    WebSocketProtocol._livesync_patched = True
    Server.kill_all_applications = kill_all_applications
    Server.create_application = create_application
    WebRequest.gotLength = gotLength
    HTTPFactory.buildProtocol = buildProtocol
    _install_write_now()
    reactor.callWhenRunning(freeze_startup_objects)


def freeze_startup_objects():
    """Collect once, then freeze what is alive, so full collections skip it (see 6. above)."""
    from .. import conf

    if not conf.get("FREEZE_STARTUP_OBJECTS"):
        return
    gc.collect()
    gc.freeze()
    logging.getLogger("syncapp").debug(
        "froze the %d objects alive at start: full garbage collections skip them", gc.get_freeze_count()
    )


def _header_timeout():
    from .. import conf

    return conf.get("REQUEST_HEADER_TIMEOUT")


def _drop_if_incomplete(protocol):
    """Drop a connection that has not sent a request's headers since it was opened (see 4. above)."""
    # Twisted wraps the HTTP/1.1 channel in a protocol that could negotiate HTTP/2.
    channel = getattr(protocol, "_channel", protocol)
    if getattr(channel, "livesync_headers_received", False):
        return
    transport = getattr(channel, "transport", None)
    if transport is not None and getattr(transport, "connected", False):
        logging.getLogger("syncapp").info(
            "dropped a connection from %s: no complete request headers within %s s",
            transport.getPeer(),
            _header_timeout(),
        )
        transport.abortConnection()


def _install_write_now():
    """Send a write to a served connection at once when nothing waits before it (see 5. above)."""
    from twisted.internet import tcp

    if getattr(tcp.Server, "_livesync_writes_now", False):
        return
    buffered_write = tcp.Server.write

    def write(self, data):
        if (
            type(data) is bytes
            and data
            and self.connected
            and not (self.disconnecting or self._writeDisconnecting or self._writeDisconnected)
            and not getattr(self, "_aborting", False)
            # TLS started on this transport encrypts in its own write; a pull producer is asked for more only
            # by a buffered write's doWrite.
            and not self.TLS
            and (self.producer is None or self.streamingProducer)
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
        ):
            sent = self.writeSomeData(data)
            # An exception (the connection is lost) is left to the buffered path, whose next send reports it.
            if not isinstance(sent, Exception):
                if sent == len(data):
                    return
                data = data[sent:]
        buffered_write(self, data)

    tcp.Server.write = write
    tcp.Server._livesync_writes_now = True
