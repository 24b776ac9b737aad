"""A WebSocket client that stops reading: the server's writes pile up in the kernel, then in the server."""

import base64
import os
import socket
import struct
import time

TCP_STATES = {1: "ESTABLISHED", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK"}


class StalledSocket:
    """A WebSocket client over a raw TCP socket with a tiny receive buffer that never reads after the
    handshake (``target`` is the request's path and query): what it asks for piles up in the kernel and
    then in the server's own buffers."""

    def __init__(self, port, target):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)  # byte by byte: nothing after the headers is consumed
            if not chunk:
                raise ConnectionError("closed during the handshake")
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response

    def send_text(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def state(self):
        """The kernel's TCP state of the socket ('ESTABLISHED', 'CLOSE_WAIT', 'CLOSE', …), read without reading."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return TCP_STATES.get(info[0], str(info[0]))

    def wait_until_dropped(self, timeout):
        """Seconds until the server ended the connection (FIN or reset), still without reading; None if not."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.state() != "ESTABLISHED":
                return time.monotonic() - started
            time.sleep(0.05)
        return None

    def drain(self, timeout=5.0):
        """Read what is left: (bytes received, how it ended: 'eof', 'reset' or 'open', close code or None)."""
        self.sock.settimeout(timeout)
        data = bytearray()
        ending = "open"
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    ending = "eof"
                    break
                data += chunk
        except ConnectionResetError:
            ending = "reset"
        except TimeoutError:
            ending = "open"
        return len(data), ending, _close_code(bytes(data))

    def close(self):
        self.sock.close()


def _close_code(data):
    """The code of a close frame among server frames in ``data``, if there is one."""
    position = 0
    while position + 2 <= len(data):
        opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if length == 126:
            length = struct.unpack(">H", data[position : position + 2])[0]
            position += 2
        elif length == 127:
            length = struct.unpack(">Q", data[position : position + 8])[0]
            position += 8
        if opcode == 0x8:
            return struct.unpack(">H", data[position : position + 2])[0] if length >= 2 else None
        position += length
    return None
