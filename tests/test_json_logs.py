"""``LIVESYNC_LOG_FORMAT=json``: every line the example project's daphne writes is one JSON object with the same
fields, whoever wrote it: daphne's access lines, daphne itself, Django, livesync, and at daphne's ``-v 2``
Twisted.

daphne runs as ``make run`` starts it (DEBUG on) and, with DEBUG off, at ``-v 2``; its stdout and stderr go to
one file. A health check, sync sockets (accepted, pushed to, and refused), a page that does not exist, a form
posted without its CSRF token and a sync URL requested without the upgrade make lines of every kind.
"""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets

from tests.support.databases import sqlite_daphne
from tests.support.v03_client import connection_path, events

TOKEN = "json-logs-token-0123456789"
FIELDS = {"time", "level", "logger", "message", "store_id", "request_id", "generation", "client"}


def status_of(url, data=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def sync_and_refuse(server):
    url = server.url + connection_path("json-logs-store", {"authToken": TOKEN})
    async with websockets.connect(url, proxy=None) as socket:
        await socket.send(json.dumps({"_tag": "WSMessage.PushReq", "requestId": "p1", "batch": events(1, 2)}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["_tag"] == "WSMessage.PushAck"
    refused = server.url + connection_path("json-logs-store", {"authToken": "wrong"})
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(refused, proxy=None):
            pass


@pytest.fixture(scope="module", params=["1", "2"], ids=["DEBUG on", "DEBUG off, -v 2"])
def output(request, tmp_path_factory):
    """The statuses of the requests, what daphne wrote from start to shutdown, and daphne's verbosity."""
    verbosity = request.param
    settings = {"LIVESYNC_LOG_FORMAT": "json", "LIVESYNC_AUTH_TOKEN": TOKEN}
    daphne_args = ("-v", verbosity)
    if verbosity == "2":
        settings.update({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "json-logs-secret-key-" + "x" * 40})
    server = sqlite_daphne(tmp_path_factory.mktemp("json-logs"), settings, daphne_args=daphne_args)
    with server:
        statuses = {
            "healthz": status_of(f"{server.http_url}/healthz"),
            "missing": status_of(f"{server.http_url}/no-such-page"),
            "csrf": status_of(f"{server.http_url}/admin/login/", data=b"username=a&password=b"),
            "no upgrade": status_of(server.http_url + connection_path("json-logs-store", {"authToken": TOKEN})),
        }
        asyncio.run(sync_and_refuse(server))
    return statuses, server.log_path.read_text(), verbosity


def records(text):
    lines = text.splitlines()
    assert lines, "daphne wrote nothing"
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"a line that is no JSON object: {line!r}")
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def test_every_line_is_a_json_object_with_the_same_fields(output):
    statuses, text, _ = output
    assert statuses == {"healthz": 200, "missing": statuses["missing"], "csrf": 403, "no upgrade": 426}
    assert statuses["missing"] >= 400
    for record in records(text):
        assert FIELDS <= record.keys() <= FIELDS | {"exc_info"}, record


def test_daphne_django_twisted_and_livesync_lines_are_all_there(output):
    _, text, verbosity = output
    by_logger = {}
    for record in records(text):
        by_logger.setdefault(record["logger"], []).append(record)
    access = [record["message"] for record in by_logger.get("daphne.access", [])]
    assert '"GET /healthz" 200 ' in "\n".join(access), access
    assert any(message.startswith('"WSCONNECT /websocket"') for message in access), access
    assert all(record["client"].startswith("127.0.0.1:") for record in by_logger["daphne.access"])
    assert any("Starting server" in record["message"] for record in by_logger["daphne.cli"])
    assert any(record["message"].endswith(": /no-such-page") for record in by_logger["django.request"])
    assert any("CSRF" in record["message"] for record in by_logger["django.security.csrf"])
    assert any(
        "refused a 0.3 websocket request" in record["message"] and record["store_id"] == "json-logs-store"
        for record in by_logger["syncapp"]
    )
    if verbosity == "2":
        # daphne hands Twisted's log to the logger daphne.server (below -v 2 it discards it).
        assert any(record["message"].startswith("HTTPFactory starting") for record in by_logger["daphne.server"])


def test_secrets_stay_out_of_json_lines(output):
    _, text, _ = output
    assert TOKEN not in text
    access = [record["message"] for record in records(text) if record["logger"] == "daphne.access"]
    assert any("payload=[redacted]" in message and " 426 " in message for message in access), access
