"""One client socket per protocol, as the real client uses it: 0.3 (``bench.frames``) or 0.4 ws
(``bench.frames04``). The load generator's jobs are written against this interface only:

- ``await Client.open(url, store, on_events=None)``: connect and start the client's live pull. Without
  ``on_events`` it returns once the pull is answered; with it, every event the socket receives (pulled or
  broadcast) goes to ``on_events(arrived_at, seq_nums, caught_up)``, ``caught_up`` being true on the
  message that ends the initial pull (and on every later one in 0.4, where each broadcast ends a page).
- ``await client.push(first_seq, count, client_id)``: push todo events, wait for the acknowledgement;
  returns ``(sent_at, acked_at)`` on the ``wsraw.now()`` clock.
- ``await Client.cold_pull(url, store, expected)``: a fresh socket pulls the whole store, checked in order.
- ``client.closed`` (a future) and ``await client.close()``.
"""

import asyncio
import json

import msgspec

from bench import frames, frames04
from bench.wsraw import connect, now


class ServerError(RuntimeError):
    pass


class Event(msgspec.Struct):
    seqNum: int


class Item(msgspec.Struct):
    eventEncoded: Event


class _InOrder:
    """Pulled events must be 1, 2, 3, … exactly once."""

    def __init__(self):
        self.next_seq, self.chunks = 1, 0

    def add(self, seq_nums):
        self.chunks += 1
        for seq_num in seq_nums:
            if seq_num != self.next_seq:
                raise ServerError(f"pull returned e{seq_num}, expected e{self.next_seq}")
            self.next_seq += 1

    def result(self, expected, started, connected, sent_at, done_at):
        events = self.next_seq - 1
        if events != expected:
            raise ServerError(f"pull returned {events} events, expected {expected}")
        return {
            "events": events,
            "chunks": self.chunks,
            "connect_s": connected - started,
            "pull_s": done_at - sent_at,
            "connect_and_pull_s": done_at - started,
            "events_per_s": events / (done_at - sent_at),
        }


# -- 0.3 -----------------------------------------------------------------------------------------------------


class RequestId(msgspec.Struct):
    context: str
    requestId: str


class PullRes(msgspec.Struct):
    batch: list[Item]
    requestId: RequestId
    remaining: int = 0


class Reply03(msgspec.Struct):
    requestId: str
    message: str = ""


decode_pull_res = msgspec.json.Decoder(PullRes).decode
decode_reply03 = msgspec.json.Decoder(Reply03).decode
PULL_RES_TAG = '"WSMessage.PullRes"'
PUSH_ACK_TAG = '"WSMessage.PushAck"'
ERROR_TAG = '"WSMessage.Error"'


async def _wait_for_reply(socket, req_id, tag=PUSH_ACK_TAG):
    """Read frames until the one tagged ``tag`` for ``req_id``; an ``Error`` for it raises. Substring tests
    first: most frames the pusher reads are other requests' broadcasts, not worth decoding."""
    while True:
        arrived_at, text = await socket.recv()
        if req_id in text:
            if tag in text:
                return arrived_at
            if ERROR_TAG in text:
                raise ServerError(json.loads(text).get("message"))


class Client03:
    protocol = "0.3"

    def __init__(self):
        self.socket = self.closed = None
        self._pushes = 0
        # With ``on_events`` every frame goes to the handler, which settles the pushes' futures here.
        self._acks = None

    @classmethod
    async def open(cls, url, store, on_events=None):
        """``PullReq`` (no cursor), then ``Ping``, as the client opens a socket."""
        client = cls()
        on_message = None if on_events is None else client._handler(on_events)
        socket = client.socket = await connect(frames.store_url(url, store), on_message=on_message)
        client.closed = socket.closed
        if on_events is not None:
            client.closed.add_done_callback(client._lost)
        req_id = frames.request_id("pull-", 0)
        socket.send(frames.pull_req(req_id))
        socket.send(frames.PING)
        if on_events is None:
            await _wait_for_reply(socket, req_id, PULL_RES_TAG)
        return client

    def _handler(self, on_events):
        self._acks = {}

        def on_message(arrived_at, text):
            if PULL_RES_TAG in text:
                res = decode_pull_res(text)
                caught_up = res.requestId.context == "pull" and res.remaining == 0
                on_events(arrived_at, [item.eventEncoded.seqNum for item in res.batch], caught_up)
            elif PUSH_ACK_TAG in text or ERROR_TAG in text:
                reply = decode_reply03(text)
                waiter = self._acks.pop(reply.requestId, None)
                if waiter is None or waiter.done():
                    return
                if PUSH_ACK_TAG in text:
                    waiter.set_result(arrived_at)
                else:
                    waiter.set_exception(ServerError(reply.message))

        return on_message

    def _lost(self, _closed):
        waiters, self._acks = self._acks.values(), {}
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ServerError("connection closed"))

    async def push(self, first_seq, count, client_id="bench"):
        req_id = frames.request_id("push-", self._pushes)
        self._pushes += 1
        waiter = None
        if self._acks is not None:
            waiter = self._acks[req_id] = asyncio.get_running_loop().create_future()
        sent_at = now()
        self.socket.send(frames.todo_push(req_id, first_seq, count, client_id, f"{client_id}-session"))
        if waiter is None:
            return sent_at, await _wait_for_reply(self.socket, req_id)
        return sent_at, await waiter

    @classmethod
    async def cold_pull(cls, url, store, expected):
        """Time from the ``PullReq`` to the ``PullRes`` with ``remaining: 0``."""
        started = now()
        socket = await connect(frames.store_url(url, store))
        connected = now()
        req_id = frames.request_id("pull-", 1)
        sent_at = now()
        socket.send(frames.pull_req(req_id))
        order, done_at = _InOrder(), None
        while done_at is None:
            arrived_at, text = await socket.recv()
            if PULL_RES_TAG not in text:
                continue
            res = decode_pull_res(text)
            if res.requestId.context != "pull" or res.requestId.requestId != req_id:
                continue
            order.add(item.eventEncoded.seqNum for item in res.batch)
            if res.remaining == 0:
                done_at = arrived_at
        await socket.close()
        return order.result(expected, started, connected, sent_at, done_at)

    async def close(self, timeout=5.0):
        await self.socket.close(timeout=timeout)


# -- 0.4 ws --------------------------------------------------------------------------------------------------


class PageInfo(msgspec.Struct):
    tag: str = msgspec.field(name="_tag")


class PullResponse(msgspec.Struct):
    batch: list[Item]
    pageInfo: PageInfo
    backendId: str


class Exit(msgspec.Struct):
    tag: str = msgspec.field(name="_tag")


class Reply(msgspec.Struct):
    """Any server message: ``Chunk``, ``Exit``, ``Pong`` or ``Defect``."""

    tag: str = msgspec.field(name="_tag")
    requestId: str = ""
    values: list[PullResponse] = []
    exit: Exit | None = None


decode_reply = msgspec.json.Decoder(Reply).decode


class Client04:
    """One ws connection multiplexing the client's RPCs: it acks every ``Chunk`` (the reference waits for the
    ack before its next catch-up page) and sends the backendId it last saw with each push, as the client does."""

    protocol = "0.4-ws"

    def __init__(self, store):
        self.store = store
        self.backend_id = None
        self._ids = 0
        self._exits = {}  # request id -> future of (arrived_at, Exit, the frame's text)
        self._streams = {}  # request id -> callback(arrived_at, seq_nums, caught_up)
        self._pong = None  # a future while open() waits for the Pong
        self.socket = self.closed = None

    async def _connect(self, url):
        self.socket = await connect(frames04.store_url(url, self.store), on_message=self._on_message)
        self.closed = self.socket.closed
        self.closed.add_done_callback(self._lost)
        return self

    def _next_id(self):
        self._ids += 1
        return str(self._ids - 1)

    @classmethod
    async def open(cls, url, store, on_events=None):
        """``Ping``, then a live ``Pull`` from the start, as the client opens a socket."""
        client = await cls(store)._connect(url)
        loop = asyncio.get_running_loop()
        caught_up = loop.create_future()
        if on_events is None:
            client._pong = loop.create_future()

        def stream(arrived_at, seq_nums, done):
            if done and not caught_up.done():
                caught_up.set_result(arrived_at)
            if on_events is not None:
                on_events(arrived_at, seq_nums, done)

        client.socket.send(frames04.PING)
        req_id = client._next_id()
        client._streams[req_id] = stream
        client.socket.send(frames04.pull(req_id, store))
        if on_events is None:
            await asyncio.gather(client._pong, caught_up)
        return client

    def _on_message(self, arrived_at, text):
        reply = decode_reply(text)
        if reply.tag == "Chunk":
            self.socket.send(frames04.ack(reply.requestId))
            seq_nums, caught_up = [], False
            for value in reply.values:
                self.backend_id = value.backendId
                seq_nums.extend(item.eventEncoded.seqNum for item in value.batch)
                caught_up = caught_up or value.pageInfo.tag == "NoMore"
            stream = self._streams.get(reply.requestId)
            if stream is not None:
                stream(arrived_at, seq_nums, caught_up)
        elif reply.tag == "Exit":
            waiter = self._exits.pop(reply.requestId, None)
            if waiter is not None and not waiter.done():
                waiter.set_result((arrived_at, reply.exit, text))
        elif reply.tag == "Pong":
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(arrived_at)
        elif reply.tag == "Defect":
            self._fail(ServerError(f"Defect: {text[:300]}"))

    def _lost(self, _closed):
        self._fail(ServerError("connection closed"))

    def _fail(self, error):
        waiters = [*self._exits.values(), self._pong]
        self._exits = {}
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    async def push(self, first_seq, count, client_id="bench"):
        req_id = self._next_id()
        waiter = self._exits[req_id] = asyncio.get_running_loop().create_future()
        sent_at = now()
        events = [frames.todo_event(n, client_id, f"{client_id}-session") for n in range(first_seq, first_seq + count)]
        self.socket.send(frames04.push(req_id, self.store, events, backend_id=self.backend_id))
        acked_at, exit_, text = await waiter
        if exit_.tag != "Success":
            raise ServerError(f"push failed: {text[:300]}")
        return sent_at, acked_at

    @classmethod
    async def cold_pull(cls, url, store, expected):
        """Time from the (live) ``Pull`` to the chunk whose page is ``NoMore``."""
        started = now()
        client = await cls(store)._connect(url)
        connected = now()
        order, done = _InOrder(), asyncio.get_running_loop().create_future()

        def stream(arrived_at, seq_nums, caught_up):
            if done.done():
                return
            try:
                order.add(seq_nums)
            except ServerError as error:
                done.set_exception(error)
                return
            if caught_up:
                done.set_result(arrived_at)

        req_id = client._next_id()
        client._streams[req_id] = stream
        sent_at = now()
        client.socket.send(frames04.pull(req_id, store))
        done_at = await asyncio.wait_for(done, 600)
        await client.close()
        return order.result(expected, started, connected, sent_at, done_at)

    async def close(self, timeout=5.0):
        await self.socket.close(timeout=timeout)


CLIENTS = {client.protocol: client for client in (Client03, Client04)}
