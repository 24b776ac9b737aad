"""One real daphne process, spoken to with a plain WebSocket client over TCP."""

import asyncio
import json
import re
import urllib.error
import urllib.request

import pytest
import websockets

from tests.support.daphne import DaphneServer
from tests.support.databases import sqlite_database
from tests.support.v03_client import connection_path, events

TOKEN = "insecure-token-change-me"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("e2e")
    settings = {"DATABASE_URL": sqlite_database(directory), "LIVESYNC_AUTH_TOKEN": TOKEN}
    with DaphneServer(directory / "daphne.log", settings) as daphne:
        yield daphne


def url(server, store_id, token=TOKEN):
    return server.url + connection_path(store_id, {"authToken": token})


async def test_push_broadcast_and_pull_over_real_sockets(server):
    async with websockets.connect(url(server, "e2e-store")) as a, websockets.connect(url(server, "e2e-store")) as b:
        await b.send(json.dumps({"_tag": "WSMessage.PullReq", "requestId": "first-pull"}))
        assert json.loads(await b.recv())["batch"] == []
        await a.send(json.dumps({"_tag": "WSMessage.PushReq", "requestId": "p1", "batch": events(1, 150)}))
        assert json.loads(await a.recv()) == {"_tag": "WSMessage.PushAck", "requestId": "p1"}
        from_a = await a.recv()
        from_b = await asyncio.wait_for(b.recv(), 5)
        assert from_a == from_b
        assert len(json.loads(from_b)["batch"]) == 150
        await b.send(json.dumps({"_tag": "WSMessage.PullReq", "requestId": "pull"}))
        chunks = [json.loads(await b.recv()), json.loads(await b.recv())]
        assert [len(c["batch"]) for c in chunks] == [100, 50]
        assert [c["remaining"] for c in chunks] == [50, 0]


async def test_daphne_refuses_a_wrong_token_with_403(server):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url(server, "e2e-store", token="wrong")):
            pass
    assert refused.value.response.status_code == 403


def test_http_answers_of_the_running_server(server):
    with urllib.request.urlopen(server.http_url + "/") as response:
        assert response.read().decode() == "Info: WebSocket sync backend endpoint for @livestore/sync-cf."
    with pytest.raises(urllib.error.HTTPError) as no_upgrade:
        urllib.request.urlopen(server.http_url + connection_path("s", {"authToken": TOKEN}))
    assert no_upgrade.value.code == 426
    with pytest.raises(urllib.error.HTTPError) as bad_token:
        urllib.request.urlopen(server.http_url + connection_path("s", {"authToken": "wrong"}))
    assert bad_token.value.code == 400


def test_healthz_of_a_server_whose_redis_is_unreachable_says_so(tmp_path):
    """Redis down from the start: the health check says 503, and sockets of one process still sync."""
    from tests.support.daphne import free_port

    settings = {"DATABASE_URL": sqlite_database(tmp_path), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with DaphneServer(tmp_path / "daphne.log", settings) as daphne:
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(daphne.http_url + "/healthz", timeout=10)
        assert unhealthy.value.code == 503
        report = json.loads(unhealthy.value.read())
        assert report["database"] == "ok"
        assert report["channel_layer"].startswith("unreachable")
        asyncio.run(_push_and_receive_locally(daphne))
        assert daphne.log_tail(200).count("channel layer unreachable") == 1


async def _push_and_receive_locally(daphne):
    async with websockets.connect(url(daphne, "no-redis")) as a, websockets.connect(url(daphne, "no-redis")) as b:
        await b.send(json.dumps({"_tag": "WSMessage.PullReq", "requestId": "first-pull"}))
        assert json.loads(await b.recv())["batch"] == []
        for n in (1, 2, 3):
            await a.send(json.dumps({"_tag": "WSMessage.PushReq", "requestId": f"p{n}", "batch": events(n, n)}))
            assert json.loads(await a.recv())["_tag"] == "WSMessage.PushAck"
            await a.recv()
            received = json.loads(await asyncio.wait_for(b.recv(), 5))
            assert [item["eventEncoded"]["seqNum"] for item in received["batch"]] == [n]


async def test_frames_over_the_limit_get_an_error_and_over_daphnes_limit_a_dropped_connection(server):
    """MAX_MESSAGE_BYTES (1,000,000) answers with an Error; daphne's own 1 MiB cap drops the connection."""
    async with websockets.connect(url(server, "e2e-big"), max_size=None) as socket:
        await socket.send(
            json.dumps({"_tag": "WSMessage.PushReq", "requestId": "big", "batch": [], "pad": "x" * 1_010_000})
        )
        assert json.loads(await socket.recv())["message"] == "Message too large: more than 1000000 bytes"
        # Daphne (autobahn) fails the connection by dropping it: no close frame, the client sees 1006. It may
        # drop it while the frame is still being sent, so the client can notice on send as well as on recv.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.send(
                json.dumps({"_tag": "WSMessage.PushReq", "requestId": "huge", "batch": [], "pad": "x" * 1_100_000})
            )
            await socket.recv()
        assert closed.value.rcvd is None


async def test_admin_frames_are_off_without_a_secret_of_the_projects_own(server):
    """The example project as `make run` starts it sets no admin secret: no secret resets anything."""
    async with websockets.connect(url(server, "e2e-admin")) as socket:
        await socket.send(json.dumps({"_tag": "WSMessage.PushReq", "requestId": "p", "batch": events(1, 3)}))
        assert json.loads(await socket.recv())["_tag"] == "WSMessage.PushAck"
        await socket.recv()
        for secret in ("any-secret", ""):
            reset = {"_tag": "WSMessage.AdminResetRoomReq", "requestId": "r", "adminSecret": secret}
            await socket.send(json.dumps(reset))
            assert json.loads(await socket.recv()) == {
                "_tag": "WSMessage.Error",
                "requestId": "r",
                "message": "Admin frames are disabled on this server",
            }
        await socket.send(json.dumps({"_tag": "WSMessage.PullReq", "requestId": "pull"}))
        assert len(json.loads(await socket.recv())["batch"]) == 3


async def test_json_logs_say_which_store_connection_and_client_a_record_is_about(tmp_path):
    """``LIVESYNC_LOG_FORMAT=json``: one JSON object per line, with the refused connection's context."""
    settings = {"DATABASE_URL": sqlite_database(tmp_path), "LIVESYNC_AUTH_TOKEN": TOKEN, "LIVESYNC_LOG_FORMAT": "json"}
    with DaphneServer(tmp_path / "daphne.log", settings) as daphne:
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url(daphne, "logged-store", token="wrong"), proxy=None):
                pass
        records = []
        for _ in range(50):
            lines = (tmp_path / "daphne.log").read_text().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            if any(record["logger"] == "syncapp" for record in records):
                break
            await asyncio.sleep(0.1)
    (refusal,) = [record for record in records if record["logger"] == "syncapp"]
    assert refusal["level"] == "WARNING" and "refused a 0.3 websocket request" in refusal["message"]
    assert refusal["store_id"] == "logged-store" and refusal["generation"] == "0.3"
    assert refusal["client"].startswith("127.0.0.1:") and len(refusal["request_id"]) == 32


def test_the_docs_list_every_environment_variable_the_example_project_reads():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    read = set()
    for source in (root / "livesync_project").glob("*.py"):
        read |= set(re.findall(r"""(?:environ\.get|environ\[|env_flag)\(?\s*["']([A-Z_]+)["']""", source.read_text()))
    page = root / "docs" / "reference" / "example-project.md"
    table = page.read_text().split("The example project (`livesync_project/settings.py`) reads", 1)[1]
    table = table.split("\n\n", 2)[1]
    listed = set(re.findall(r"`([A-Z_]+)`", table))
    assert read - {"DJANGO_SETTINGS_MODULE"} <= listed, read - listed


async def test_the_objects_alive_at_start_are_left_out_of_full_garbage_collections(tmp_path):
    """A full collection walks only what the server allocated after it started serving (a long pull's
    objects), not the 100,000 and more that Django, Channels and Twisted hold from the start."""
    settings = {"DATABASE_URL": sqlite_database(tmp_path), "LIVESYNC_LOG_LEVEL": "DEBUG"}
    frozen = []
    with DaphneServer(tmp_path / "daphne.log", settings):
        for _ in range(50):
            log = (tmp_path / "daphne.log").read_text()
            frozen = re.findall(r"froze the (\d+) objects alive at start", log)
            if frozen:
                break
            await asyncio.sleep(0.1)
    assert len(frozen) == 1 and int(frozen[0]) > 50_000, frozen
