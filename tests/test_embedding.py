"""livesync inside a host project: the host's URLs stay its own, and 0.4 requests are taken only on the sync mount."""

import pytest
from channels.testing import ApplicationCommunicator

from syncapp.routing import TransportRouter

pytestmark = pytest.mark.django_db(transaction=True)


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
