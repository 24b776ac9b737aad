"""What a client costs the server is bounded, whatever it sends (cases 7 and 9).

A client that asks for a large backlog many times and never reads, and clients that open connections and
never finish their handshake: the server's memory stays flat, other clients are served meanwhile, and
half-open connections are dropped after ``REQUEST_HEADER_TIMEOUT``.
"""

import asyncio
import json
import os
import socket
import time

import pytest

from tests.support.databases import sqlite_daphne
from tests.support.stalled import StalledSocket
from tests.support.v03_socket import SyncSocket, store_url
from tests.support.v04_client import pull_payload, query, request

pytestmark = pytest.mark.hostile

STORE_EVENTS = 50_000
PULLS = 20
# Each pull of the store is ~9 MB of frames: 20 of them held for a client that never reads were ~200 MB.
MAX_GROWTH_KIB = 60_000


def rss_kib(server):
    with open(f"/proc/{server.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _fill(server, store_id):
    writer = await SyncSocket("writer", store_url(server.url, store_id)).open()
    for first in range(1, STORE_EVENTS + 1, 1000):
        batch = [
            {"name": "e", "args": {"n": n}, "seqNum": n, "parentSeqNum": n - 1, "clientId": "w", "sessionId": "s"}
            for n in range(first, first + 1000)
        ]
        outcome = await writer.push(batch, timeout=30)
        assert outcome.acked, outcome.message
    return writer


async def _served_while_stalled(server, store_id, writer, stalled_frames, target):
    before = rss_kib(server)
    stalled = await asyncio.to_thread(StalledSocket, server.port, target)
    for frame in stalled_frames:
        stalled.send_text(frame)
    peak = before
    started = time.monotonic()
    while time.monotonic() - started < 8:
        # Other clients are served meanwhile: a full pull of the same store, and a push.
        reader = await SyncSocket("reader", store_url(server.url, store_id)).open(timeout=30)
        assert len(reader.history) == writer.head and reader.violations == []
        await reader.close()
        peak = max(peak, rss_kib(server))
        await asyncio.sleep(0.5)
    pushed = await writer.push(
        [
            {
                "name": "e",
                "args": {},
                "seqNum": writer.head + 1,
                "parentSeqNum": writer.head,
                "clientId": "w",
                "sessionId": "s",
            }
        ]
    )
    assert pushed.acked, pushed.message
    stalled.close()
    return peak - before


async def test_a_0_3_client_that_pulls_many_times_and_never_reads_costs_bounded_memory(server, store_id):
    writer = await _fill(server, store_id)
    pulls = [json.dumps({"_tag": "WSMessage.PullReq", "requestId": f"p{n}"}) for n in range(PULLS)]
    growth = await _served_while_stalled(server, store_id, writer, pulls, f"/websocket?storeId={store_id}")
    await writer.close()
    assert growth < MAX_GROWTH_KIB, f"the server grew by {growth} KiB"


async def test_a_0_4_client_that_pulls_many_times_and_never_reads_costs_bounded_memory(server, store_id):
    writer = await _fill(server, store_id)
    pulls = [
        json.dumps(request(str(n), "SyncWsRpc.Pull", pull_payload(store_id, True)), separators=(",", ":"))
        for n in range(PULLS)
    ]
    growth = await _served_while_stalled(server, store_id, writer, pulls, f"/?{query(store_id)}")
    await writer.close()
    assert growth < MAX_GROWTH_KIB, f"the server grew by {growth} KiB"


HEADER_TIMEOUT = 2
HALF_OPEN = 200


def _half_open(port):
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(
        f"GET /websocket?storeId=half HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n".encode()
    )
    return connection


def _open_sockets(server):
    """Sockets the server process holds open (its listening socket and every connection)."""
    fds = os.listdir(f"/proc/{server.pid}/fd")
    return sum(1 for fd in fds if os.readlink(f"/proc/{server.pid}/fd/{fd}").startswith("socket:"))


async def _open_half_open(server, count):
    connections = []
    for _ in range(count):
        connections.append(await asyncio.to_thread(_half_open, server.port))
        if len(connections) % 20 == 0:
            # Paced, so that each connection is accepted rather than left in a full listen backlog.
            await asyncio.sleep(0.05)
    return connections


def _dropped(connection):
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_half_open_handshakes_are_dropped_after_the_header_timeout(tmp_path, store_id):
    settings = {
        "DJANGO_SETTINGS_MODULE": "tests.hostile.settings",
        "LIVESYNC_HOSTILE_REQUEST_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    }
    with sqlite_daphne(tmp_path, settings) as server:
        opened = time.monotonic()
        baseline = _open_sockets(server)
        connections = await _open_half_open(server, HALF_OPEN)
        trickler = await asyncio.to_thread(_half_open, server.port)
        trickler_opened = time.monotonic()
        await asyncio.sleep(0.2)
        assert _open_sockets(server) >= baseline + HALF_OPEN, "the server did not accept every connection"
        # Served meanwhile.
        client = await SyncSocket("client", store_url(server.url, store_id)).open()
        outcome = await client.push(
            [{"name": "e", "args": {}, "seqNum": 1, "parentSeqNum": 0, "clientId": "c", "sessionId": "s"}]
        )
        assert outcome.acked, outcome.message
        # One header byte at a time keeps Twisted's own idle timeout from firing, up to just before the deadline
        # (a byte sent after the server dropped the connection would fail the test with a reset, not find it).
        while time.monotonic() < trickler_opened + HEADER_TIMEOUT - 0.3:
            trickler.sendall(b"X")
            await asyncio.sleep(0.25)
        await asyncio.sleep(HEADER_TIMEOUT + 1.5 - (time.monotonic() - opened))
        for connection in (*connections, trickler):
            connection.settimeout(2)
        dropped = [await asyncio.to_thread(_dropped, connection) for connection in (*connections, trickler)]
        for connection in (*connections, trickler):
            connection.close()
        assert all(dropped), f"{dropped.count(False)} half-open connections were still open"
        assert _open_sockets(server) <= baseline + 1, "the server still holds the half-open connections"
        # A connection that completed its handshake is not affected.
        outcome = await client.push(
            [{"name": "e", "args": {}, "seqNum": 2, "parentSeqNum": 1, "clientId": "c", "sessionId": "s"}]
        )
        assert outcome.acked, outcome.message
        await client.close()
