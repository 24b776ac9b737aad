"""A raw WebSocket load generator speaking the 0.3 protocol with the client's exact frames."""

import asyncio
import json
import time
from urllib.parse import quote

import websockets


def store_url(base_url, store_id, payload=None):
    query = f"storeId={quote(store_id, safe='')}"
    if payload is not None:
        query += "&payload=" + quote(quote(json.dumps(payload, separators=(",", ":")), safe=""), safe="")
    return f"{base_url}/websocket?{query}"


def push_frame(request_id, first_seq, count, client_id="bench"):
    batch = [
        {
            "name": "v1.TodoCreated",
            "args": {"id": f"todo-{n}", "text": f"todo number {n}"},
            "seqNum": n,
            "parentSeqNum": n - 1,
            "clientId": client_id,
            "sessionId": "bench-session",
        }
        for n in range(first_seq, first_seq + count)
    ]
    return json.dumps({"_tag": "WSMessage.PushReq", "requestId": request_id, "batch": batch}, separators=(",", ":"))


async def push_and_wait(socket, request_id, first_seq, count):
    """Push one batch and wait for its PushAck; return the ack latency in seconds."""
    started = time.perf_counter()
    await socket.send(push_frame(request_id, first_seq, count))
    while True:
        reply = json.loads(await socket.recv())
        if reply.get("requestId") == request_id and reply["_tag"] == "WSMessage.PushAck":
            return time.perf_counter() - started
        if reply["_tag"] == "WSMessage.Error" and reply["requestId"] == request_id:
            raise RuntimeError(reply["message"])


async def push_events(url, total, batch_size):
    """Push ``total`` events in batches, each waiting for its ack; return (seconds, ack latencies)."""
    latencies = []
    async with websockets.connect(url, max_size=None) as socket:
        started = time.perf_counter()
        for index, first in enumerate(range(1, total + 1, batch_size)):
            latencies.append(await push_and_wait(socket, f"push-{index}", first, min(batch_size, total - first + 1)))
        return time.perf_counter() - started, latencies


async def many_stores(base_url, stores, events_per_store, prefix):
    """Push ``events_per_store`` single-event pushes to each of ``stores`` stores concurrently."""
    started = time.perf_counter()
    await asyncio.gather(
        *(push_events(store_url(base_url, f"{prefix}-{i}"), events_per_store, 1) for i in range(stores))
    )
    return time.perf_counter() - started
