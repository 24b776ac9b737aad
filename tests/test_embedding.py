"""livesync inside a host project: the host's URLs stay its own, 0.4 requests are taken only on the sync mount, and
the host's middleware sees what the sockets send."""

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.sessions import InstanceSessionWrapper
from channels.testing import ApplicationCommunicator

from syncapp.routing import TransportRouter, websocket_urlpatterns
from tests.support.v03_client import Client

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def host_urls(settings):
    settings.ROOT_URLCONF = "tests.support.embedded_urls"
    settings.APPEND_SLASH = True


def test_the_hosts_own_urls_keep_djangos_behaviour(client, host_urls):
    assert client.get("/no/such/page/").status_code == 404
    redirect = client.get("/admin")
    assert redirect.status_code == 301 and redirect["Location"] == "/admin/"
    assert client.post("/my/own/api/?transport=http&storeId=hijack").content == b"host view: POST"


def test_the_sync_urls_answer_under_their_prefix(client, host_urls):
    assert client.get("/sync/").content.decode().startswith("Info: WebSocket sync backend endpoint")
    assert client.get("/sync/healthz").status_code == 200
    assert client.get("/sync/websocket?storeId=s").status_code == 426


class Recorder:
    """An ASGI app that records the paths it was given and answers 204."""

    def __init__(self):
        self.paths = []

    async def __call__(self, scope, receive, send):
        self.paths.append(scope["path"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "websocket.close"})


async def http_status(app, path, query):
    scope = {"type": "http", "method": "POST", "path": path, "query_string": query.encode(), "headers": []}
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b"[]"})
    start = await communicator.receive_output(5)
    await communicator.receive_output(5)
    return start["status"]


@pytest.mark.parametrize("prefix", ["/sync", "sync/", "/sync/"])
async def test_a_router_with_a_path_prefix_takes_0_4_requests_only_there(prefix):
    host = Recorder()
    router = TransportRouter(host, path_prefix=prefix)
    query = "storeId=s&transport=http"
    assert await http_status(router, "/my/own/api/", query) == 204
    assert await http_status(router, "/syncing", query) == 204
    assert host.paths == ["/my/own/api/", "/syncing"]
    for path in ("/sync", "/sync/", "/sync/sub"):
        # The 0.4 endpoint: a 200 JSON answer (an empty RPC reply to a body that is no request).
        assert await http_status(router, path, query) == 200
    assert host.paths == ["/my/own/api/", "/syncing"]


async def test_a_router_without_a_prefix_takes_0_4_requests_on_any_path_as_the_reference():
    host = Recorder()
    router = TransportRouter(host)
    assert await http_status(router, "/any/path", "storeId=s&transport=http") == 200
    assert await http_status(router, "/any/path", "storeId=s") == 204
    assert host.paths == ["/any/path"]


class SendRecorder:
    """A host's own middleware: records the type of every message the app inside it sends."""

    def __init__(self, inner):
        self.inner = inner
        self.sent = []

    async def __call__(self, scope, receive, send):
        async def recording_send(message):
            self.sent.append(message["type"])
            await send(message)

        return await self.inner(scope, receive, recording_send)


async def test_frames_pass_the_hosts_own_middleware_and_skip_only_the_session_middlewares_send(store_id, monkeypatch):
    """Channels' session middleware acts on HTTP responses only; frames skip its ``send`` (see
    ``websocket.frame_sender``), and a middleware of the host's still sees every frame."""
    session_sends = []
    session_send = InstanceSessionWrapper.send

    async def counted_send(self, message):
        session_sends.append(message["type"])
        await session_send(self, message)

    monkeypatch.setattr(InstanceSessionWrapper, "send", counted_send)
    host = SendRecorder(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
    client = Client(store_id, app=host)
    assert (await client.connect())[0]
    await client.send('{"_tag":"WSMessage.Ping","requestId":"ping"}')
    assert (await client.recv())["_tag"] == "WSMessage.Pong"
    await client.communicator.disconnect()
    assert host.sent == ["websocket.accept", "websocket.send"]
    assert session_sends == ["websocket.accept"]
