"""What installing ``syncapp`` changes for a host project's own routes under daphne: nothing they can tell.

A host project (``tests.support.host_settings``) serves its own views and Channels consumer beside livesync's
routes, in a real daphne process, with ``syncapp`` installed and, to compare with, without it. livesync's
patches to daphne (``syncapp.server.daphne_compat``) are process-wide: a slow upload to a host view, a streaming
response, a host consumer's close codes and a view's ASGI scope must be what they are without ``syncapp``,
while a connection that trickles its request headers is still dropped after ``REQUEST_HEADER_TIMEOUT``.
"""

import http.client
import json
import socket
import time

import pytest
import websockets

from tests.support.daphne import DaphneServer
from tests.support.host_urls import STREAM_PAUSE_SECONDS, STREAMED_PARTS

HEADER_TIMEOUT = 2.0
UPLOAD_BYTES = 15_000
# The upload is sent 1 kB at a time over this long: more than twice the header deadline.
UPLOAD_SECONDS = 5.0


def _host(directory, *, with_syncapp):
    settings = {
        "DJANGO_SETTINGS_MODULE": "tests.support.host_settings",
        "HOST_REQUEST_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    }
    if not with_syncapp:
        settings["HOST_WITHOUT_SYNCAPP"] = "1"
    return DaphneServer(directory / "daphne.log", settings, application="tests.support.host_asgi:application")


@pytest.fixture(scope="module")
def with_syncapp(tmp_path_factory):
    with _host(tmp_path_factory.mktemp("host-with-syncapp"), with_syncapp=True) as server:
        yield server


@pytest.fixture(scope="module")
def without_syncapp(tmp_path_factory):
    with _host(tmp_path_factory.mktemp("host-without-syncapp"), with_syncapp=False) as server:
        yield server


@pytest.fixture(params=["with syncapp", "without syncapp"])
def host(request):
    return request.getfixturevalue(request.param.replace(" ", "_"))


def _read_until_closed(connection):
    """Everything the server sends until it closes the connection (a reset ends it too)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_a_slow_upload_to_a_host_view_outlasting_the_header_deadline_is_answered(with_syncapp):
    body = b"x" * UPLOAD_BYTES
    head = (
        f"POST /upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", with_syncapp.port), timeout=10) as connection:
        started = time.monotonic()
        connection.sendall(head.encode())
        try:
            for offset in range(0, len(body), 1000):
                time.sleep(UPLOAD_SECONDS / (len(body) / 1000))
                connection.sendall(body[offset : offset + 1000])
        except (BrokenPipeError, ConnectionResetError):
            pytest.fail(f"the upload was cut after {time.monotonic() - started:.1f} s:\n{with_syncapp.log_tail()}")
        response = _read_until_closed(connection)
        elapsed = time.monotonic() - started
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    assert response.endswith(f"received {UPLOAD_BYTES} bytes".encode())
    assert elapsed > 2 * HEADER_TIMEOUT


def test_a_request_whose_headers_trickle_past_the_deadline_is_still_dropped(with_syncapp):
    with socket.create_connection(("127.0.0.1", with_syncapp.port), timeout=10) as connection:
        opened = time.monotonic()
        connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # A header byte at a time keeps Twisted's own idle timeout from firing, up to just before the deadline
        # (a byte sent after the server dropped the connection would fail the test with a reset, not find it).
        while time.monotonic() < opened + HEADER_TIMEOUT - 0.3:
            connection.sendall(b"X")
            time.sleep(0.25)
        response = _read_until_closed(connection)
        dropped_after = time.monotonic() - opened
    assert response == b""
    # The deadline runs from the server's accept, which may come a moment before ``opened``.
    assert HEADER_TIMEOUT - 0.1 <= dropped_after < HEADER_TIMEOUT + 3


def test_a_host_streaming_response_streams(host):
    connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    started = time.monotonic()
    connection.request("GET", "/stream/")
    response = connection.getresponse()
    body, arrivals = b"", []
    while part := response.read1():
        body += part
        arrivals.append((time.monotonic() - started, body))
    connection.close()
    assert response.status == 200 and body == b"".join(STREAMED_PARTS)
    first_part_at = next(at for at, so_far in arrivals if so_far.startswith(STREAMED_PARTS[0]))
    # The first part reached the client while the view still waited to send the others.
    assert arrivals[-1][0] - first_part_at >= 1.5 * STREAM_PAUSE_SECONDS


@pytest.mark.parametrize("code", [1000, 4000])
async def test_a_host_consumer_echoes_and_its_close_code_reaches_the_client(host, code):
    async with websockets.connect(f"{host.url}/host/echo", proxy=None) as client:
        await client.send("hello")
        assert await client.recv() == "hello"
        await client.send(f"close {code}")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def _scope(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/scope/")
    response = connection.getresponse()
    seen = json.loads(response.read())
    connection.close()
    return seen


def test_a_host_views_asgi_scope_is_the_one_it_gets_without_syncapp(with_syncapp, without_syncapp):
    assert _scope(with_syncapp) == _scope(without_syncapp)
