"""Frames and HTTP answers recorded from the reference servers, kept in ``tests/fixtures``, and what replays them.

They are part of the repository, so a clone alone replays them; a missing file fails the tests that read it.

A replay (``run_timeline``) sends the recorded client frames in the recorded order, each once the frames the
reference had sent before it have arrived (counted, never timed), and once the requests the reference took
before it have been answered (each replay says which: ``Action.after``), so that requests racing in the
recording are taken in the recorded order. At the end each socket must have received exactly the frames
expected of it: a Ping is sent, and anything that arrives before its Pong is an extra frame (a socket handles
its frames and the store's messages in order), however late it would have come.
"""

import asyncio
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from channels.testing import ApplicationCommunicator, WebsocketCommunicator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

_CREATED_AT = re.compile(r'"createdAt":"[0-9T:.\-]+Z"')

# How long one expected frame may take to arrive, however loaded the machine: a missing frame fails the replay
# with what did arrive, it is never waited for by a shorter clock.
FRAME_TIMEOUT = 10


@cache
def _load(version):
    return {p["name"]: p for p in json.loads((FIXTURES / f"ref-{version}-transcripts.json").read_text())["probes"]}


def probe_names(version="0.3.1"):
    """Every recorded probe, in the recording's order."""
    return list(_load(version))


def recorded_probe(name, version="0.3.1"):
    """The whole recorded probe (``description``, ``nondeterministic``, ``transcript``, …)."""
    return _load(version)[name]


def probe(name, version="0.3.1"):
    return _load(version)[name]["transcript"]


@cache
def scenarios_0_4():
    """The 0.4.0 recording's scenarios by name, each with its ``exchanges``."""
    return {s["name"]: s for s in json.loads((FIXTURES / "ref-0.4.0-transcripts.json").read_text())["scenarios"]}


def normalize(frame):
    """A frame with its push times blanked: they are the one part two servers can't share."""
    return _CREATED_AT.sub('"createdAt":"<createdAt>"', frame)


def split_url(url):
    """``(path, [(key, value), …])`` of a recorded URL (absolute or not), the query decoded once."""
    without_origin = re.sub(r"^[a-z]+://[^/?]+", "", url)
    path, _, query = without_origin.partition("?")
    return path or "/", parse_qsl(query, keep_blank_values=True)


def payload_of(query):
    """The sync payload a client put in the query (encoded twice), or None."""
    encoded = dict(query).get("payload")
    return None if encoded is None else json.loads(unquote(encoded))


def query_string(query):
    """A query string from ``[(key, value), …]``, encoded as the clients encode theirs."""
    from urllib.parse import urlencode

    return urlencode(query)


@dataclass
class Action:
    """One thing the client did at recorded time ``t``: send ``text`` (or a function giving it, called when it is
    sent; or ``data`` as a binary frame) on the socket ``key``, or close it (``close``); or run ``call`` (opening a
    socket, an HTTP exchange), awaited."""

    t: float
    key: object = None
    text: str | None = None
    data: bytes | None = None
    close: bool = False
    call: object = None
    # Frames each socket must have received before this action, besides those recorded before ``t``.
    after: dict = field(default_factory=dict)


class ReplaySocket:
    """One in-process WebSocket of a replay; ``received`` holds every text frame it got, in order."""

    def __init__(self, app, path, query, ping, pong):
        self.communicator = WebsocketCommunicator(app, f"{path}?{query}" if query else path)
        self.ping, self.pong = ping, pong
        self.received = []
        self.closed = None
        self.connected = False

    async def open(self):
        self.connected, detail = await self.communicator.connect(timeout=FRAME_TIMEOUT)
        assert self.connected, f"the replayed connection was refused: {detail}"
        return self

    async def send(self, text=None, data=None):
        if self.closed is None:
            await self.communicator.send_to(text_data=text, bytes_data=data)

    async def fill(self, count):
        """Receive until ``count`` frames arrived (or the socket closed, or one took FRAME_TIMEOUT)."""
        while len(self.received) < count and self.closed is None:
            if not await self._receive_one():
                return

    async def _receive_one(self):
        try:
            output = await self.communicator.receive_output(FRAME_TIMEOUT)
        except TimeoutError:
            self.closed = "no frame within the timeout"
            return False
        if output["type"] == "websocket.send":
            self.received.append(output.get("text") if output.get("text") is not None else output.get("bytes"))
        elif output["type"] == "websocket.close":
            self.closed = output.get("code", 1000)
        return True

    async def settle(self):
        """Nothing more is on its way: a Ping is answered after anything already queued for this socket; what
        arrives before its Pong is kept in ``received`` (as extra frames)."""
        if self.closed is not None:
            return
        await self.communicator.send_to(text_data=self.ping)
        before = len(self.received)
        while self.closed is None and await self._receive_one():
            if len(self.received) > before and self.received[-1] == self.pong:
                self.received.pop()
                return

    async def close(self):
        if self.connected and self.closed is None:
            self.closed = "closed by the replay"
            await self.communicator.disconnect()


async def run_timeline(actions, sockets, expected_times):
    """Perform ``actions`` in order of ``t``: before each, every open socket has received the frames expected of
    it before ``t`` (``expected_times[key]``: the recorded times of its expected frames, in order) and the counts
    in ``action.after``. A socket the client closes first settles (nothing unexpected may be waiting for it).
    At the end every socket still open receives all its expected frames and settles."""
    for action in sorted(actions, key=lambda action: action.t):
        for key, socket in sockets.items():
            if socket.connected:
                due = sum(1 for t in expected_times[key] if t < action.t)
                await socket.fill(max(due, action.after.get(key, 0)))
        if action.call is not None:
            await action.call()
        elif action.close:
            await sockets[action.key].settle()
            await sockets[action.key].close()
        else:
            text = action.text() if callable(action.text) else action.text
            await sockets[action.key].send(text, action.data)
    for key, socket in sockets.items():
        if socket.connected:
            await socket.fill(len(expected_times[key]))
    for socket in sockets.values():
        if socket.connected:
            await socket.settle()
    await asyncio.gather(*(socket.close() for socket in sockets.values()))


async def http_exchange(app, method, path, query, headers=(), body=b""):
    """One HTTP request in process: ``(status, headers dict with lower-case names, body text)``."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(FRAME_TIMEOUT)
    assert start["type"] == "http.response.start", start
    chunks = []
    while True:
        message = await communicator.receive_output(FRAME_TIMEOUT)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await communicator.wait(FRAME_TIMEOUT)
    answered = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return start["status"], answered, b"".join(chunks).decode()


async def refused_handshake(app, path, query):
    """The HTTP answer to a WebSocket handshake, on a server offering the ``websocket.http.response``
    extension (as the reference answers it): ``(status, body)``, or ``(101, "")`` if it was accepted."""
    scope = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [],
        "subprotocols": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {"websocket.http.response": {}},
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "websocket.connect"})
    start = await communicator.receive_output(FRAME_TIMEOUT)
    if start["type"] == "websocket.accept":
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(FRAME_TIMEOUT)
        return 101, ""
    assert start["type"] == "websocket.http.response.start", start
    body = await communicator.receive_output(FRAME_TIMEOUT)
    return start["status"], body["body"].decode()


def media_type(content_type):
    """``text/plain`` of ``text/plain;charset=UTF-8``: the charset spelling is no part of the comparison."""
    return (content_type or "").split(";")[0].strip().lower()
