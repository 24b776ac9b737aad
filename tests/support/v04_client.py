"""In-process clients of the 0.4 endpoints (``transport=ws`` / ``transport=http``), framed as ``makeWsSync`` does."""

import json
from urllib.parse import quote

from channels.routing import URLRouter
from channels.testing import ApplicationCommunicator, WebsocketCommunicator

from syncapp.routing import TransportRouter, websocket_urlpatterns
from tests.support.v03_client import Client, event, events  # noqa: F401  (the same event shape in both generations)

websocket_application = TransportRouter(URLRouter(websocket_urlpatterns))


def query(store_id, payload=None, transport="ws"):
    """The query the 0.4 client builds: storeId, payload (JSON, URI-encoded, then query-encoded), transport."""
    parts = [f"storeId={quote(store_id, safe='')}"]
    if payload is not None:
        parts.append("payload=" + quote(quote(json.dumps(payload, separators=(",", ":")), safe=""), safe=""))
    parts.append(f"transport={transport}")
    return "&".join(parts)


def request(request_id, tag, payload):
    return {"_tag": "Request", "id": request_id, "tag": tag, "payload": payload, "headers": []}


def pull_payload(store_id, live=None, after=None, backend_id=None):
    cursor = {"_tag": "None"}
    if after is not None:
        cursor = {"_tag": "Some", "value": {"backendId": backend_id, "eventSequenceNumber": after}}
    payload = {"storeId": store_id}
    if live is not None:
        payload["live"] = live
    payload["cursor"] = cursor
    return payload


def push_payload(store_id, batch, backend_id=None):
    option = {"_tag": "None"} if backend_id is None else {"_tag": "Some", "value": backend_id}
    return {"storeId": store_id, "batch": batch, "backendId": option}


def seq_nums(chunk):
    """The seqNums of every PullResponse in a Chunk frame."""
    return [item["eventEncoded"]["seqNum"] for value in chunk["values"] for item in value["batch"]]


class RpcClient(Client):
    """A 0.4 ``makeWsSync`` socket: the 0.3 test client's plumbing with 0.4 framing."""

    def __init__(self, store_id, payload=None, path="/", app=websocket_application):
        self.store_id = store_id
        self.communicator = WebsocketCommunicator(app, f"{path}?{query(store_id, payload)}")
        self.connected = False

    async def push(self, request_id, batch, backend_id=None):
        await self.send(request(request_id, "SyncWsRpc.Push", push_payload(self.store_id, batch, backend_id)))

    async def pull(self, request_id, live, after=None, backend_id=None):
        await self.send(request(request_id, "SyncWsRpc.Pull", pull_payload(self.store_id, live, after, backend_id)))

    async def pull_pages(self, request_id, after=None, backend_id=None):
        """A non-live pull: its Chunk frames up to its Exit, and the Exit."""
        await self.pull(request_id, False, after, backend_id)
        chunks = []
        while True:
            frame = await self.recv()
            if frame["_tag"] == "Exit":
                return chunks, frame
            assert frame["_tag"] == "Chunk" and frame["requestId"] == request_id, frame
            chunks.append(frame)


async def http_call(body, store_id, payload=None, method="POST", path="/", headers=(), transport="http"):
    """One HTTP request to the 0.4 endpoint: ``(status, headers dict, body bytes)``."""
    app = TransportRouter(fallback=None)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query(store_id, payload, transport).encode(),
        "headers": [(b"content-type", b"application/json"), *headers],
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
    start = await communicator.receive_output(10)
    assert start["type"] == "http.response.start", start
    chunks = []
    while True:
        message = await communicator.receive_output(10)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(chunks)
