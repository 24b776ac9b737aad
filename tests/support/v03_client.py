"""An in-process WebSocket client for protocol tests (Channels' WebsocketCommunicator)."""

import json
from urllib.parse import quote

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from syncapp.routing import websocket_urlpatterns

application = URLRouter(websocket_urlpatterns)


def connection_path(store_id, payload=None, path="/websocket"):
    """The URL the real client builds: ``JSON.stringify``, ``encodeURIComponent``, then query-encoded again."""
    query = f"storeId={quote(store_id, safe='')}"
    if payload is not None:
        query += "&payload=" + quote(quote(json.dumps(payload, separators=(",", ":")), safe=""), safe="")
    return f"{path}?{query}"


def event(seq_num, name="v1.TodoCreated", client_id="client", args=None):
    """One event dict as the client encodes it, with the reference's key order."""
    return {
        "name": name,
        "args": {"id": f"todo-{seq_num}", "text": f"todo {seq_num}"} if args is None else args,
        "seqNum": seq_num,
        "parentSeqNum": seq_num - 1,
        "clientId": client_id,
        "sessionId": "session",
    }


def events(first, last, **kwargs):
    return [event(n, **kwargs) for n in range(first, last + 1)]


class Client:
    def __init__(self, store_id, payload=None, path="/websocket", headers=None, app=application):
        self.communicator = WebsocketCommunicator(app, connection_path(store_id, payload, path), headers=headers)
        self.connected = False

    async def connect(self):
        self.connected, detail = await self.communicator.connect(timeout=10)
        return self.connected, detail

    async def send(self, frame):
        await self.communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def recv_text(self, timeout=10):
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", output
        return output["text"]

    async def recv(self, timeout=10):
        return json.loads(await self.recv_text(timeout))

    async def recv_output(self, timeout=10):
        return await self.communicator.receive_output(timeout)

    async def nothing(self, timeout=0.3):
        return await self.communicator.receive_nothing(timeout)

    async def push(self, request_id, batch):
        await self.send({"_tag": "WSMessage.PushReq", "requestId": request_id, "batch": batch})

    async def pull(self, request_id, cursor=None):
        frame = {"_tag": "WSMessage.PullReq", "requestId": request_id}
        if cursor is not None:
            frame["cursor"] = cursor
        await self.send(frame)

    async def pull_all(self, request_id, cursor=None):
        """Pull and collect the chunks up to the one with ``remaining: 0``."""
        await self.pull(request_id, cursor)
        chunks = []
        while True:
            chunk = await self.recv()
            assert chunk["_tag"] == "WSMessage.PullRes", chunk
            chunks.append(chunk)
            if chunk["remaining"] == 0:
                return chunks

    async def close(self):
        await self.communicator.disconnect()


def seq_nums(pull_res):
    return [item["eventEncoded"]["seqNum"] for item in pull_res["batch"]]
