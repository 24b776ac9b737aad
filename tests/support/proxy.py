"""A TCP proxy to put between a server process and PostgreSQL, Redis or daphne, and cut like a network.

The proxy runs its own asyncio loop on a daemon thread, so synchronous and asynchronous tests drive it alike
and it keeps forwarding while a test's own loop is busy::

    with TcpProxy("127.0.0.1", 5432) as postgres:
        settings = {"DATABASE_URL": postgres.rewrite(database_url)}
        ...
        postgres.cut()      # every open connection is reset, new ones are refused
        postgres.restore()  # new connections are forwarded again (on the same port)
        postgres.stall()    # connections stay open and are accepted, but nothing is forwarded any more

``cut()`` closes the listening socket (a client's connect fails at once with "connection refused", as with a
stopped service) and aborts every forwarded connection in both directions (the peers see a reset). The proxy
keeps its port across cuts, so the URLs handed out stay valid. ``stall()`` is the other way a network fails:
packets dropped without a word, so that a peer waits for an answer that never comes; ``restore()`` then resets
the stalled connections (their peers would have given up on them) and forwards new ones.
"""

import asyncio
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1", listen_port=0):
        self.target_host = target_host
        self.target_port = int(target_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.accepted = 0
        self.refused_while_cut = 0
        self._links = set()
        self._server = None
        self._cut = False
        self._stalled = False
        self._loop = None
        self._thread = None

    @classmethod
    def for_url(cls, url):
        """A proxy in front of the host and port of ``url`` (``postgres://…``, ``redis://…``, ``ws://…``)."""
        parts = urlsplit(url)
        return cls(parts.hostname, parts.port)

    def rewrite(self, url):
        """``url`` with its host and port replaced by the proxy's (user, password, path and query kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.listen_host}:{self.port}"))

    @property
    def address(self):
        return (self.listen_host, self.port)

    @property
    def is_cut(self):
        return self._cut

    @property
    def open_connections(self):
        return len(self._links)

    # Lifecycle, called from any thread but the proxy's own.

    def start(self):
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tcp-proxy-{self.target_port}", daemon=True
        )
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self):
        if self._thread is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._thread = None

    def cut(self):
        """Reset every forwarded connection and refuse new ones until ``restore()``."""
        self._call(self._cut_now())

    def restore(self):
        """Accept and forward new connections again, on the same port."""
        self._call(self._restore_now())

    def stall(self):
        """Forward nothing more on any connection, open or new, until ``restore()``: a peer waits in vain."""
        self._call(self._stall_now())

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _call(self, coroutine, timeout=10):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # The proxy's loop.

    async def _listen(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=listener)

    async def _close_listener(self):
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _cut_now(self):
        self._cut = True
        await self._close_listener()
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _restore_now(self):
        if self._stalled:
            self._stalled = False
            for link in list(self._links):
                link.abort()
            self._links.clear()
        if not self._cut:
            return
        self._cut = False
        await self._listen()

    async def _stall_now(self):
        self._stalled = True

    async def _shutdown(self):
        await self._close_listener()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _accept(self, client_reader, client_writer):
        if self._cut:
            self.refused_while_cut += 1
            _abort(client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(client_writer)
            return
        if self._cut:
            _abort(client_writer)
            _abort(upstream_writer)
            return
        self.accepted += 1
        link = _Link(client_writer, upstream_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                _pipe(client_reader, upstream_writer, self._is_stalled),
                _pipe(upstream_reader, client_writer, self._is_stalled),
            )
        finally:
            self._links.discard(link)
            link.close()

    def _is_stalled(self):
        return self._stalled


class _Link:
    def __init__(self, *writers):
        self.writers = writers

    def abort(self):
        for writer in self.writers:
            _abort(writer)

    def close(self):
        for writer in self.writers:
            if not writer.transport.is_closing():
                writer.transport.close()


def _abort(writer):
    """Drop the connection with a reset: nothing buffered is delivered any more."""
    try:
        writer.transport.abort()
    except Exception:  # noqa: BLE001 - already gone
        pass


async def _pipe(reader, writer, stalled):
    """Copy ``reader`` to ``writer``, dropping what arrives while ``stalled()``."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if stalled():
                continue
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        # Half-close towards the other side, as the peer did; a cut aborts both sides anyway.
        try:
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass
