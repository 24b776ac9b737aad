"""A minimal, fast WebSocket client (RFC 6455) for the load generator.

Latency is measured from the kernel's receive timestamp of each read (``SO_TIMESTAMPNS``, the wall clock
when the bytes reached the socket), not from when the load generator's event loop got around to them: with
200 subscribers on one store the loop handles 200 sockets one after another (~30 µs each), and counting
that queueing would add milliseconds to the last subscriber's latency. ``now()`` is the same clock, for
send times. Where the kernel gives no timestamp, the time of the read is used.

It sends what a browser or Node's ``ws`` sends: an HTTP/1.1 upgrade, masked text frames (random 4-byte
mask), pongs to pings and a close handshake. It offers no extensions (``permessage-deflate``): see
``bench/README.md``.
"""

import asyncio
import base64
import os
import socket
import struct
import time
from collections import deque
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
_ANCILLARY_SPACE = socket.CMSG_SPACE(16)
_READ_SIZE = 256 * 1024

now = time.time  # the clock of the kernel's receive timestamps


class HandshakeRefused(Exception):
    def __init__(self, status, body):
        super().__init__(f"upgrade refused with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class ConnectionClosed(Exception):
    pass


def _mask(payload, key):
    """XOR ``payload`` with the repeated 4-byte ``key`` (big-integer arithmetic: C speed, no loop)."""
    length = len(payload)
    if not length:
        return payload
    repeated = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")


def encode_frame(opcode, payload):
    header = bytearray([0x80 | opcode])
    length = len(payload)
    if length < 126:
        header.append(0x80 | length)
    elif length < 65536:
        header.append(0x80 | 126)
        header += struct.pack("!H", length)
    else:
        header.append(0x80 | 127)
        header += struct.pack("!Q", length)
    key = os.urandom(4)
    return bytes(header) + key + _mask(payload, key)


class WebSocketClient:
    """One client socket. ``await recv()`` returns ``(arrived_at, text)``; or set ``on_message(arrived_at,
    text)`` to handle messages as they are read (then ``recv()`` gets nothing). ``arrived_at`` is on the
    ``now()`` clock."""

    def __init__(self, sock, host, path, on_message=None):
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.host = host
        self.path = path
        self.on_message = on_message
        self.opened = self.loop.create_future()
        self.closed = self.loop.create_future()
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._handshaken = False
        self._refused_status = None
        self._fragments = []
        self._fragment_opcode = None
        self._messages = deque()
        self._waiter = None
        self._close_sent = False

    # -- socket I/O ----------------------------------------------------------------------------------
    def start(self):
        self.loop.add_reader(self.sock.fileno(), self._readable)
        key = base64.b64encode(os.urandom(16)).decode()
        self._write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
            ).encode()
        )

    def _readable(self):
        try:
            data, ancillary, _, _ = self.sock.recvmsg(_READ_SIZE, _ANCILLARY_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lost(error)
            return
        if not data:
            self._lost(None)
            return
        arrived_at = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack_from("qq", value)
                arrived_at = seconds + nanoseconds * 1e-9
        self._data_received(data, arrived_at or now())

    def _write(self, data):
        if self.closed.done():
            return
        if self._outgoing:
            self._outgoing += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self._lost(error)
            return
        if sent < len(data):
            self._outgoing += data[sent:]
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self):
        try:
            sent = self.sock.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lost(error)
            return
        del self._outgoing[:sent]
        if not self._outgoing:
            self.loop.remove_writer(self.sock.fileno())

    def _lost(self, error):
        if self.closed.done():
            return
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
        self.sock.close()
        if not self.opened.done():
            if self._refused_status is not None:
                body = bytes(self._buffer).decode("utf-8", "replace")
                self.opened.set_exception(HandshakeRefused(self._refused_status, body))
            else:
                self.opened.set_exception(error or ConnectionClosed("connection closed during the handshake"))
        self.closed.set_result(None)
        self._wake()

    # -- frames ----------------------------------------------------------------------------------------
    def _data_received(self, data, arrived_at):
        buffer = self._buffer
        buffer += data
        if not self._handshaken:
            if self._refused_status is not None:
                return  # collecting the refusal's body until the server closes
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1")
            status = int(head.split(" ", 2)[1])
            del buffer[: end + 4]
            if status != 101:
                self._refused_status = status
                self.loop.call_later(0.5, self._lost, None)
                return
            self._handshaken = True
            self.opened.set_result(None)
        position = 0
        size = len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            offset = position + 2
            if length == 126:
                if size - offset < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset)
                offset += 2
            elif length == 127:
                if size - offset < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset)
                offset += 8
            key = None
            if second & 0x80:  # a server must not mask; unmask anyway
                key = bytes(buffer[offset : offset + 4])
                offset += 4
            if size - offset < length:
                break
            payload = bytes(buffer[offset : offset + length])
            if key is not None:
                payload = _mask(payload, key)
            position = offset + length
            self._frame(first & 0x80, first & 0x0F, payload, arrived_at)
        if position:
            del buffer[:position]

    def _frame(self, fin, opcode, payload, arrived_at):
        if opcode >= OP_CLOSE:
            if opcode == OP_PING:
                self._write(encode_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                if not self._close_sent:
                    self._close_sent = True
                    self._write(encode_frame(OP_CLOSE, payload[:2]))
                self._lost(None)
            return
        if opcode != OP_CONT:
            self._fragment_opcode = opcode
        if not fin:
            self._fragments.append(payload)
            return
        if self._fragments:
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            self._fragments = []
        text = payload.decode() if self._fragment_opcode == OP_TEXT else payload
        if self.on_message is not None:
            self.on_message(arrived_at, text)
        else:
            self._messages.append((arrived_at, text))
            self._wake()

    def _wake(self):
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- API -------------------------------------------------------------------------------------------
    def send(self, text):
        self._write(encode_frame(OP_TEXT, text.encode()))

    async def recv(self):
        while not self._messages:
            if self.closed.done():
                raise ConnectionClosed("connection closed")
            self._waiter = self.loop.create_future()
            await self._waiter
            self._waiter = None
        return self._messages.popleft()

    async def close(self, code=1000, timeout=5.0):
        """Close handshake: send a close frame and wait for the server's (then the socket is closed)."""
        if self.closed.done():
            return
        if not self._close_sent:
            self._close_sent = True
            self._write(encode_frame(OP_CLOSE, struct.pack("!H", code)))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.abort()

    def abort(self):
        self._lost(ConnectionClosed("aborted"))


async def connect(url, on_message=None, timeout=60.0):
    """Open ``ws://host:port/path?query`` and return the open ``WebSocketClient``."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// URLs are supported, not {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass  # no kernel timestamps: the time of the read is used
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (parts.hostname, parts.port)), timeout)
    except BaseException:
        sock.close()
        raise
    client = WebSocketClient(sock, parts.netloc, path, on_message)
    client.start()
    try:
        await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    except BaseException:
        client.abort()
        raise
    return client
