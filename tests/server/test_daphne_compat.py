"""What ``syncapp.server.daphne_compat`` changes in daphne: writes to a connection are sent at once when nothing waits
before them, and the objects alive at start are frozen out of full garbage collections unless turned off.

Each write test wraps one end of a real loopback TCP connection in Twisted's own
``tcp.Server``, as daphne's listening port does, with a reactor that only
records which connections asked to be written later.
"""

import gc
import socket

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol

from syncapp.server.daphne_compat import freeze_startup_objects


class RecordingReactor:
    """The reactor calls a ``tcp.Server`` makes while writing: which connections wait for the next turn."""

    def __init__(self):
        self.writers = set()

    def addWriter(self, writer):
        self.writers.add(writer)

    def removeWriter(self, writer):
        self.writers.discard(writer)

    def addReader(self, reader):
        pass


@pytest.fixture
def served():
    """``(transport, peer, reactor)``: a served connection's transport, the client's socket, the reactor."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    accepted, address = listener.accept()
    listener.close()
    accepted.setblocking(False)
    reactor = RecordingReactor()
    transport = tcp.Server(accepted, Protocol(), address, None, 1, reactor)
    yield transport, peer, reactor
    peer.close()
    accepted.close()


def _receive(peer, size):
    received = b""
    peer.settimeout(5)
    while len(received) < size:
        chunk = peer.recv(1 << 20)
        assert chunk, "the connection closed early"
        received += chunk
    return received


def test_a_write_to_an_idle_connection_is_sent_before_the_reactor_turns(served):
    transport, peer, reactor = served
    transport.write(b"a frame")
    assert _receive(peer, 7) == b"a frame"
    assert reactor.writers == set()


def test_what_the_socket_does_not_take_waits_and_later_writes_keep_their_order(served):
    """A client that stops reading: the rest of a large write is buffered for the reactor, and a write after it
    waits behind it instead of overtaking it."""
    transport, peer, reactor = served
    large = bytes(range(256)) * (16 << 10)  # 4 MiB, more than a loopback socket takes unread
    transport.write(large)
    assert reactor.writers == {transport}
    transport.write(b"after")
    pending = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    assert 5 < pending <= len(large) + 5

    expected, received = large + b"after", bytearray()
    peer.settimeout(5)
    while len(received) < len(expected):
        received += peer.recv(1 << 20)
        if reactor.writers:
            transport.doWrite()
    assert bytes(received) == expected
    assert reactor.writers == set()


def test_freezing_the_startup_objects_can_be_turned_off(settings):
    # Compared with the count before, not with 0: this test must not depend on what ran in this process first.
    frozen_before = gc.get_freeze_count()
    settings.LIVESYNC = {"FREEZE_STARTUP_OBJECTS": False}
    freeze_startup_objects()
    assert gc.get_freeze_count() == frozen_before
    settings.LIVESYNC = {}
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()
