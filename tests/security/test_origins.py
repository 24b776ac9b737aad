"""Issue 36, cross-site requests: every sync route (0.3 ws, 0.4 ws, 0.4 http) refuses, before the upgrade, a Host
Django would refuse and a browser Origin that is neither the request's own nor trusted; and a socket may not guess
the admin secret.

Against a real daphne serving ``syncapp.access.user_access``: a logged-in user's session cookie is all a
client needs there, which is what a page on another site would borrow. Then, in process, the finer rules.
"""

import http.client
import json
import socket
import subprocess
import sys
import uuid

import pytest
from channels.testing import ApplicationCommunicator

from syncapp.routing import TransportRouter
from tests.support.daphne import REPO_ROOT, DaphneServer, server_environment
from tests.support.databases import sqlite_database
from tests.support.metrics import METRICS_SETTINGS, metric
from tests.support.v03_client import application as v03_application
from tests.support.v03_client import connection_path, events
from tests.support.v04_client import push_payload, query, request

pytestmark = [pytest.mark.security]

EVIL = "https://evil.example"
ADMIN_SECRET = "an-admin-secret-for-the-security-tests"

# Run in ``manage.py shell`` on the server's database: a superuser and a logged-in session of theirs, as a
# browser that logged into the admin holds it. Prints the session key.
SESSION_SETUP = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
user = User.objects.create_superuser("alice", password="a-password-for-the-security-tests")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


def start_session_server(directory, **settings):
    """A daphne serving ``user_access`` on a new database, and the cookie header of a logged-in superuser."""
    database_url = sqlite_database(directory)
    environment = {
        "DATABASE_URL": database_url,
        "LIVESYNC_VALIDATE_PAYLOAD": "syncapp.access.user_access",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LIVESYNC_ADMIN_SECRET": ADMIN_SECRET,
        **METRICS_SETTINGS,
        **settings,
    }
    setup = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SESSION_SETUP],
        cwd=REPO_ROOT,
        env=server_environment(environment),
        check=True,
        capture_output=True,
        text=True,
    )
    cookie = f"sessionid={setup.stdout.strip().splitlines()[-1]}"
    return DaphneServer(directory / "daphne.log", environment).start(), cookie


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server, cookie = start_session_server(tmp_path_factory.mktemp("origins"))
    try:
        yield server, cookie
    finally:
        server.stop()


def own_origin(server):
    return f"http://127.0.0.1:{server.port}"


def upgrade_status(server, path, origin=None, cookie=None, host=None):
    """The status daphne answers a WebSocket upgrade of ``path`` with: 101 accepted, 403 refused."""
    headers = {
        "Host": host or f"127.0.0.1:{server.port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    if origin is not None:
        headers["Origin"] = origin
    if cookie is not None:
        headers["Cookie"] = cookie
    lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items()), "", ""]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall("\r\n".join(lines).encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def http_push(server, store_id, seq_num, headers, content_type="text/plain"):
    """A 0.4 HTTP push (what ``makeHttpSync`` sends, or a cross-site form could): ``(status, body text)``."""
    body = json.dumps(request("1", "SyncHttpRpc.Push", push_payload(store_id, events(seq_num, seq_num))))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            "POST",
            f"/?{query(store_id, transport='http')}",
            body=body.encode(),
            headers={"Content-Type": content_type, **headers},
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def pushed(answer):
    status, body = answer
    return status == 200 and json.loads(body)[0]["exit"]["_tag"] == "Success"


def routes(store_id):
    return {"0.3": connection_path(store_id), "0.4": f"/?{query(store_id)}"}


@pytest.mark.parametrize("generation", ["0.3", "0.4"])
def test_a_cross_site_socket_with_the_session_cookie_is_refused_before_the_upgrade(served, generation):
    server, cookie = served
    store_id = f"origins-{uuid.uuid4().hex[:8]}"
    path = routes(store_id)[generation]
    refused_before = metric(
        server.http_url, "livesync_handshakes_total", generation=generation, transport="ws", outcome="origin"
    )
    assert upgrade_status(server, path, origin=EVIL, cookie=cookie) == 403
    assert upgrade_status(server, path, origin="null", cookie=cookie) == 403
    # The page's own site, and clients that send no Origin at all (Node, native apps), still connect.
    assert upgrade_status(server, path, origin=own_origin(server), cookie=cookie) == 101
    assert upgrade_status(server, path, cookie=cookie) == 101
    refused_after = metric(
        server.http_url, "livesync_handshakes_total", generation=generation, transport="ws", outcome="origin"
    )
    assert refused_after - refused_before == 2
    log = server.log_path.read_text(errors="replace")
    assert f"WARNING  syncapp refused a {generation} websocket request" in log
    assert f"403 Origin not allowed (Origin '{EVIL}' is neither this server's ({own_origin(server)})" in log


def test_a_host_django_refuses_is_refused_on_every_route(served):
    """DNS rebinding: a page on evil.example, resolved to this server, is same-origin with itself; only the Host
    tells, and ALLOWED_HOSTS (127.0.0.1 here) refuses it on every route, as Django refuses it on its own."""
    server, cookie = served
    store_id = f"hosts-{uuid.uuid4().hex[:8]}"
    rebound = {"Host": "evil.example", "Origin": "http://evil.example"}
    for generation, path in routes(store_id).items():
        before = metric(
            server.http_url, "livesync_handshakes_total", generation=generation, transport="ws", outcome="host"
        )
        assert upgrade_status(server, path, origin=rebound["Origin"], host=rebound["Host"], cookie=cookie) == 403
        assert upgrade_status(server, path, host="evil.example") == 403
        assert upgrade_status(server, path, cookie=cookie) == 101
        after = metric(
            server.http_url, "livesync_handshakes_total", generation=generation, transport="ws", outcome="host"
        )
        assert after - before == 2
    assert http_push(server, store_id, 1, {"Cookie": cookie, **rebound}) == (400, "Host not allowed")
    assert http_push(server, store_id, 1, {"Cookie": cookie, "Host": "evil.example"}) == (400, "Host not allowed")
    # Nothing was written: the first push the server accepts is still seqNum 1.
    assert pushed(http_push(server, store_id, 1, {"Cookie": cookie}))
    log = server.log_path.read_text(errors="replace")
    assert "400 Host not allowed (Invalid HTTP_HOST header: 'evil.example'." in log


def test_the_admin_secret_cannot_be_guessed_on_one_socket(served):
    """After 3 wrong secrets the socket is closed with 4403; the right one still works on a new socket."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server, cookie = served
    store_id = f"admin-{uuid.uuid4().hex[:8]}"
    url = f"{server.url}{connection_path(store_id)}"
    with connect(url, additional_headers={"Cookie": cookie}, open_timeout=10) as guesser:
        for attempt in range(5):
            frame = {
                "_tag": "WSMessage.AdminInfoReq",
                "requestId": f"guess-{attempt}",
                "adminSecret": f"guess-{attempt}",
            }
            guesser.send(json.dumps(frame))
        answers = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                answers.append(json.loads(guesser.recv(timeout=10)))
    assert [answer["message"] for answer in answers] == ["Invalid admin secret"] * 3
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    with connect(url, additional_headers={"Cookie": cookie}, open_timeout=10) as admin:
        admin.send(json.dumps({"_tag": "WSMessage.AdminInfoReq", "requestId": "right", "adminSecret": ADMIN_SECRET}))
        assert json.loads(admin.recv(timeout=10))["_tag"] == "WSMessage.AdminInfoRes"
    assert "with 4403: 3 wrong admin secrets" in server.log_path.read_text(errors="replace")


# In process: which origins and hosts are trusted, on a server that answers refusals with their status.


async def ws_status(app, path, headers=(), scheme="ws"):
    """The status a WebSocket upgrade is answered with under a server offering ``websocket.http.response``."""
    scope = {
        "type": "websocket",
        "scheme": scheme,
        "path": path.split("?")[0],
        "query_string": path.split("?", 1)[1].encode(),
        "headers": [(name.encode(), value.encode()) for name, value in headers],
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "websocket.connect"})
    first = await communicator.receive_output(5)
    if first["type"] == "websocket.accept":
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(5)
        return 101
    return first["status"]


async def both_ws_statuses(headers, scheme="ws"):
    """The 0.3 and the 0.4 route's status for the same headers (they must agree)."""
    v03 = await ws_status(v03_application, connection_path("s"), headers, scheme)
    v04 = await ws_status(TransportRouter(None), f"/?{query('s')}", headers, scheme)
    assert v03 == v04, (v03, v04)
    return v03


@pytest.mark.django_db(transaction=True)
async def test_trusted_origins_are_the_sites_own_csrf_trusted_origins_and_allowed_origins(settings):
    host = [("host", "sync.example")]
    settings.ALLOWED_HOSTS = ["sync.example"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example", "https://*.trusted.example"]
    settings.LIVESYNC = {"ALLOWED_ORIGINS": ["https://listed.example"]}
    for origin, status in [
        ("http://sync.example", 101),
        ("https://sync.example", 403),  # the scheme is part of the origin: this is ws://
        ("https://app.example", 101),
        ("https://eu.trusted.example", 101),
        ("http://eu.trusted.example", 403),
        ("https://listed.example", 101),
        ("https://evil.example", 403),
        ("https://sync.example.evil.example", 403),
    ]:
        assert await both_ws_statuses([*host, ("origin", origin)]) == status, origin
    # Over TLS (wss://, or a proxy Django trusts through SECURE_PROXY_SSL_HEADER) the site's own origin is https.
    assert await both_ws_statuses([*host, ("origin", "https://sync.example")], scheme="wss") == 101
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [*host, ("x-forwarded-proto", "https"), ("origin", "https://sync.example")]
    assert await both_ws_statuses(proxied) == 101


@pytest.mark.django_db(transaction=True)
async def test_a_wildcard_admits_any_origin_but_not_with_the_session_cookie(settings):
    settings.LIVESYNC = {"ALLOWED_ORIGINS": ["*"]}
    assert await both_ws_statuses([("origin", EVIL)]) == 101
    assert await both_ws_statuses([("origin", EVIL), ("cookie", "sessionid=anything")]) == 403


@pytest.mark.django_db(transaction=True)
async def test_hosts_are_validated_as_django_validates_them(settings):
    settings.ALLOWED_HOSTS = [".example.com"]
    assert await both_ws_statuses([("host", "sync.example.com")]) == 101
    assert await both_ws_statuses([("host", "evil.example")]) == 400
    # DEBUG with ALLOWED_HOSTS empty allows localhost, as Django does.
    settings.ALLOWED_HOSTS = []
    settings.DEBUG = True
    assert await both_ws_statuses([("host", "localhost:8000")]) == 101
    assert await both_ws_statuses([("host", "evil.example")]) == 400
    settings.DEBUG = False
    assert await both_ws_statuses([("host", "localhost:8000")]) == 400
