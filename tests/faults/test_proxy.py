"""The TCP proxy the fault tests cut (tests/support/proxy.py), against a local echo server."""

import socket
import socketserver
import threading

import pytest

from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.faults


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def roundtrip(address, payload=b"ping"):
    with socket.create_connection(address, timeout=2) as client:
        client.sendall(payload)
        return client.recv(65536)


def test_forwards_cuts_and_restores_on_the_same_port(echo_server):
    with TcpProxy(*echo_server) as proxy:
        port = proxy.port
        assert roundtrip(proxy.address) == b"ping"
        held = socket.create_connection(proxy.address, timeout=2)
        held.sendall(b"before")
        assert held.recv(100) == b"before"

        proxy.cut()
        # The open connection is reset, new ones are refused.
        with pytest.raises((ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            held.sendall(b"after")
            if held.recv(100) == b"":
                raise ConnectionResetError("closed")
        held.close()
        with pytest.raises(ConnectionRefusedError):
            roundtrip(proxy.address)

        proxy.restore()
        assert proxy.port == port
        assert roundtrip(proxy.address, b"again") == b"again"


def test_rewrites_service_urls():
    proxy = TcpProxy("127.0.0.1", 5432, listen_port=15432)
    assert proxy.rewrite("postgres://postgres:secret@127.0.0.1:5432/db?x=1") == (
        "postgres://postgres:secret@127.0.0.1:15432/db?x=1"
    )
    assert proxy.rewrite("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:15432/0"
