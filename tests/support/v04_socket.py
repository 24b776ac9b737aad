"""A raw 0.4 client over a real socket, for tests that send what no LiveStore client would.

(``tests.support.v03_socket.SyncSocket`` is its 0.3 counterpart.) ``RpcSocket`` is a 0.4
``makeWsSync`` socket read by a background task: answers are collected per request id, and each live pull's
events are checked the same way (no gap, no duplicate), so a test asserts the invariant and not a sample.
"""

import asyncio
import json
from urllib.parse import quote

import websockets

from tests.support.v04_client import pull_payload, push_payload, query, request


def rpc_url(base_url, store_id):
    return f"{base_url}/?{query(store_id)}"


def raw_url(base_url, store_id, transport=None):
    suffix = "" if transport is None else f"&transport={transport}"
    return f"{base_url}/websocket?storeId={quote(store_id, safe='')}{suffix}"


def event(seq_num, client_id="hostile", name="v1.Hostile", args=None):
    return {
        "name": name,
        "args": {} if args is None else args,
        "seqNum": seq_num,
        "parentSeqNum": seq_num - 1,
        "clientId": client_id,
        "sessionId": f"{client_id}-session",
    }


def events(first, last, **kwargs):
    return [event(seq_num, **kwargs) for seq_num in range(first, last + 1)]


async def open_ws(url, timeout=10.0):
    return await asyncio.wait_for(
        websockets.connect(url, max_size=None, proxy=None, compression=None, ping_interval=None), timeout
    )


class RpcSocket:
    """One 0.4 WebSocket: ``call`` waits for a request's Exit; ``live_pull`` follows a subscription."""

    def __init__(self, base_url, store_id):
        self.url = rpc_url(base_url, store_id)
        self.store_id = store_id
        self.ws = None
        self.frames = []
        self.exits = {}
        self.chunks = {}
        self.live = {}  # request id -> seqNums received, in order
        self.violations = []
        self.close_code = None
        self.closed = asyncio.Event()
        self._progress = asyncio.Condition()
        self._requests = 0

    async def open(self):
        self.ws = await open_ws(self.url)
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        await asyncio.wait([self._reader], timeout=3)

    def next_id(self):
        self._requests += 1
        return str(self._requests)

    async def send_text(self, text):
        await self.ws.send(text)

    async def call(self, tag, payload, timeout=10.0):
        request_id = self.next_id()
        await self.send_text(json.dumps(request(request_id, tag, payload)))
        return await self.wait_for(lambda: self.exits.get(request_id), timeout), request_id

    async def push(self, batch, backend_id=None, timeout=10.0):
        exit_frame, _ = await self.call("SyncWsRpc.Push", push_payload(self.store_id, batch, backend_id), timeout)
        return exit_frame

    async def live_pull(self, after=None, backend_id=None):
        """Start a live pull; its events are checked as they come (see ``live_seq_nums``)."""
        request_id = self.next_id()
        self.live[request_id] = []
        payload = pull_payload(self.store_id, True, after, backend_id)
        await self.send_text(json.dumps(request(request_id, "SyncWsRpc.Pull", payload)))
        return request_id

    async def wait_for(self, condition, timeout=10.0):
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: condition() or self.closed.is_set()), timeout)
        result = condition()
        if not result:
            raise ConnectionError(f"socket closed ({self.close_code}) before the answer")
        return result

    async def wait_for_seq(self, request_id, seq_num, timeout=10.0):
        await self.wait_for(lambda: (self.live[request_id] or [0])[-1] >= seq_num, timeout)

    async def _read(self):
        try:
            async for text in self.ws:
                frame = json.loads(text)
                self.frames.append(frame)
                self._handle(frame)
                async with self._progress:
                    self._progress.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            async with self._progress:
                self._progress.notify_all()

    def _handle(self, frame):
        tag = frame.get("_tag")
        if tag == "Exit":
            self.exits[frame["requestId"]] = frame
        elif tag == "Chunk":
            request_id = frame["requestId"]
            self.chunks.setdefault(request_id, []).append(frame)
            received = self.live.get(request_id)
            if received is None:
                return
            for value in frame["values"]:
                for item in value["batch"]:
                    seq_num = item["eventEncoded"]["seqNum"]
                    previous = received[-1] if received else 0
                    if seq_num != previous + 1:
                        kind = "duplicate" if seq_num <= previous else "gap"
                        self.violations.append(f"pull {request_id}: {kind}: e{seq_num} after e{previous}")
                    received.append(seq_num)
