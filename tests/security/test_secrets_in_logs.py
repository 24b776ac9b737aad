"""No sync payload (a client's auth token) in what the servers write: LiveStore clients send their
``syncPayload`` in the URL (``payload=``) of every WebSocket upgrade and every 0.4 HTTP request.

daphne runs as ``make run`` and the Dockerfile start it (``daphne -b … -p … livesync_project.asgi:application``,
DEBUG on and off), with its access log on as it is by default; nginx runs with ``deploy/nginx.conf``. Clients
with a valid and with a refused token make requests of each kind, and no part of either token is in the output.
"""

import asyncio
import json
import logging
import re
import urllib.error
import urllib.request
from urllib.parse import quote, unquote

import pytest
import websockets
from django.test import override_settings

from syncapp import tokens
from tests.support.daphne import REPO_ROOT
from tests.support.databases import sqlite_daphne
from tests.support.gateways import LoadBalancer

pytestmark = pytest.mark.security

SERVER_SECRET_KEY = "the-log-test-server-secret-key-that-signs-every-token-0123"
STORE = "logged-store"
# The server commands of `make run` and of the image: daphne with no option but the address.
DAPHNE_COMMAND = re.compile(r"daphne\W+-b\W+\S+\W+-p\W+\S+\W+livesync_project\.asgi:application")


def encoded_payload(token):
    """The ``payload`` query value the clients send: JSON, URI-encoded, then query-encoded."""
    return quote(quote(json.dumps({"authToken": token}, separators=(",", ":")), safe=""), safe="")


def issued():
    """A token that opens STORE and one that does not (refused), signed as the server signs."""
    with override_settings(SECRET_KEY=SERVER_SECRET_KEY):
        return tokens.issue(STORE), tokens.issue("another-store")


def assert_no_part_of(token, output):
    """Neither the token nor any of its parts (payload, timestamp, signature) is in ``output``, as written or
    decoded once or twice."""
    parts = [token, *(part for part in token.split(":") if len(part) >= 6)]
    for text in (output, unquote(output), unquote(unquote(output))):
        for part in parts:
            assert part not in text, f"{part!r} is in the server's output:\n{output}"


def http_pull(base_url, token):
    body = {"_tag": "Request", "id": "1", "tag": "SyncHttpRpc.Pull", "headers": []}
    body["payload"] = {"storeId": STORE, "cursor": {"_tag": "None"}}
    request = urllib.request.Request(
        f"{base_url}/?storeId={STORE}&payload={encoded_payload(token)}&transport=http",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def websocket_pull(url):
    """Connects, pulls once over 0.3, and says whether the server accepted the socket."""
    try:
        async with websockets.connect(url, open_timeout=10) as socket:
            await socket.send(json.dumps({"_tag": "WSMessage.PullReq", "requestId": "r"}))
            await asyncio.wait_for(socket.recv(), 10)
            return True
    except websockets.InvalidStatus:
        return False


def plain_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module", params=["make run", "Dockerfile"])
def served(request, tmp_path_factory):
    """Every kind of sync request, with a valid and a refused token, against daphne started as ``make run``
    (DEBUG on) or the image (DEBUG off) starts it; then the server's whole output, once it has stopped."""
    makefile, dockerfile = (REPO_ROOT / "Makefile").read_text(), (REPO_ROOT / "Dockerfile").read_text()
    assert DAPHNE_COMMAND.search(makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]), "make run starts daphne"
    assert DAPHNE_COMMAND.search(dockerfile.split("\nCMD", 1)[1]), "the image starts daphne"
    settings = {"LIVESYNC_VALIDATE_PAYLOAD": "syncapp.tokens.validate_token", "DJANGO_SECRET_KEY": SERVER_SECRET_KEY}
    if request.param == "Dockerfile":
        settings.update({"DJANGO_DEBUG": "false", "DJANGO_ALLOWED_HOSTS": "127.0.0.1"})
    good, refused = issued()
    outcomes = {}
    server = sqlite_daphne(tmp_path_factory.mktemp("logs"), settings)
    with server:
        outcomes["0.4 http"] = [http_pull(server.http_url, token) for token in (good, refused)]
        websocket_urls = {
            "0.3 websocket": f"{server.url}/websocket?storeId={STORE}&payload={{}}",
            "0.4 websocket": f"{server.url}/?storeId={STORE}&payload={{}}&transport=ws",
        }
        for kind, url in websocket_urls.items():
            outcomes[kind] = [asyncio.run(websocket_pull(url.format(encoded_payload(t)))) for t in (good, refused)]
        # A 0.3 socket's URL requested without the upgrade (a probe, a proxy, a mistyped client): 426 or 400.
        without_upgrade = f"{server.http_url}/websocket?storeId={STORE}&payload={{}}"
        outcomes["0.3 without upgrade"] = [
            plain_get(without_upgrade.format(encoded_payload(t))) for t in (good, refused)
        ]
    return outcomes, (good, refused), server.log_path.read_text(errors="replace")


def test_no_token_of_a_0_4_http_request_is_in_daphnes_output(served):
    outcomes, (good, refused), output = served
    assert outcomes["0.4 http"] == [200, 400]
    assert_no_part_of(good, output)
    assert_no_part_of(refused, output)
    # The access log is on, and names each request without its payload.
    assert output.count(f'"POST /?storeId={STORE}&payload=[redacted]&transport=http" 200') == 1
    assert output.count(f'"POST /?storeId={STORE}&payload=[redacted]&transport=http" 400') == 1


def test_no_token_of_a_0_3_websocket_or_of_its_url_without_upgrade_is_in_daphnes_output(served):
    outcomes, (good, refused), output = served
    assert outcomes["0.3 websocket"] == [True, False]
    assert outcomes["0.4 websocket"] == [True, False]
    assert outcomes["0.3 without upgrade"] == [426, 400]
    assert_no_part_of(good, output)
    assert_no_part_of(refused, output)
    assert '"WSCONNECT /websocket"' in output and '"WSREJECT /websocket"' in output
    assert f'"GET /websocket?storeId={STORE}&payload=[redacted]" 426' in output


def test_nginx_with_the_shipped_config_logs_no_query_string(tmp_path):
    good, refused = issued()
    settings = {"LIVESYNC_VALIDATE_PAYLOAD": "syncapp.tokens.validate_token", "DJANGO_SECRET_KEY": SERVER_SECRET_KEY}
    with sqlite_daphne(tmp_path, settings) as server:
        balancer = LoadBalancer(tmp_path, [server.port])
        with balancer:
            base_url = f"http://127.0.0.1:{balancer.port}"
            assert [http_pull(base_url, token) for token in (good, refused)] == [200, 400]
    written = "\n".join(path.read_text(errors="replace") for path in balancer.directory.glob("*.log"))
    assert_no_part_of(good, written)
    assert_no_part_of(refused, written)
    assert '"POST / HTTP/1.1" 200' in written and '"POST / HTTP/1.1" 400' in written, written


def test_uvicorn_and_runserver_request_lines_are_redacted(caplog):
    """uvicorn's access log (``uvicorn.access``) and its WebSocket lines (``uvicorn.error``), and daphne's
    runserver (``django.channels.server``), are loggers: a filter redacts their records."""
    from syncapp.logcontext import redact_server_logs

    redact_server_logs()
    token = "a-token-of-the-uvicorn-test"
    path = f"/websocket?storeId={STORE}&payload={encoded_payload(token)}"
    with caplog.at_level(logging.INFO):
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", path, "1.1", 200)
        logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", path)
        logging.getLogger("django.channels.server").info(
            "HTTP %(method)s %(path)s %(status)s", {"method": "GET", "path": path, "status": 426}
        )
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3 and all(f"storeId={STORE}&payload=[redacted]" in m for m in messages), messages
    assert_no_part_of(token, "\n".join(messages))


def test_an_auth_token_printed_as_json_or_a_dict_is_redacted():
    from syncapp.logcontext import RedactingFilter, redact

    assert redact('payload {"authToken":"abc123"} refused') == 'payload {"authToken":"[redacted]"} refused'
    assert redact("payload {'authToken': 'abc123', 'x': 1}") == "payload {'authToken': '[redacted]', 'x': 1}"
    assert redact("/?authToken=abc123&storeId=s") == "/?authToken=[redacted]&storeId=s"
    assert redact("/?storeId=s&mypayload=kept") == "/?storeId=s&mypayload=kept"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("/?payload=abc123",), None)
    assert RedactingFilter().filter(record) and record.getMessage() == "/?payload=[redacted]"
