"""What a client sees when its connection request is refused, under each kind of ASGI server."""

import pytest
from channels.routing import URLRouter
from channels.testing import ApplicationCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.urls import re_path

from syncapp.consumers import V03Consumer, V04HttpEndpoint, V04WsConsumer
from tests.support.v03_client import Client, application, connection_path

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

TOKEN_PAYLOAD = {"authToken": "insecure-token-change-me"}


async def refusal(path, extensions=True, app=application, headers=()):
    """The HTTP answer of a handshake on a server offering the ``websocket.http.response`` extension."""
    scope = {
        "type": "websocket",
        "path": path.split("?")[0],
        "query_string": path.split("?", 1)[1].encode() if "?" in path else b"",
        "headers": list(headers),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if extensions else {},
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "websocket.connect"})
    start = await communicator.receive_output(5)
    if start["type"] != "websocket.http.response.start":
        return start
    body = await communicator.receive_output(5)
    return start["status"], body["body"].decode()


async def test_missing_store_id_is_refused_with_the_reference_500():
    status, body = await refusal(connection_path("ignored", TOKEN_PAYLOAD).replace("storeId=ignored&", ""))
    assert status == 500
    assert body == (
        "Invalid search params: { readonly storeId: string; readonly payload: "
        "(StringFromUriComponent <-> (parseJson <-> JsonValue)) | undefined }\n"
        '└─ ["storeId"]\n   └─ is missing'
    )


async def test_payload_that_is_not_uri_encoded_json_is_refused_with_500():
    status, body = await refusal("/websocket?storeId=s&payload=not-json")
    assert status == 500
    assert body.startswith("Invalid search params: ")
    assert '["payload"]' in body


@pytest.mark.parametrize("store_id", ["", "x" * 256, "tab\there"])
async def test_unusable_store_ids_are_refused(store_id):
    status, body = await refusal(f"/websocket?storeId={store_id}")
    assert status == 500
    assert '["storeId"]' in body


async def test_rejected_payload_gets_the_reference_400(settings, monkeypatch):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "livesync_project.auth.validate_payload"}
    monkeypatch.setenv("LIVESYNC_AUTH_TOKEN", "insecure-token-change-me")
    status, body = await refusal(connection_path("s", {"authToken": "wrong-token"}))
    assert (status, body) == (
        400,
        'LiveStore.UnexpectedError: { "cause": Error: Invalid auth token, "note": undefined, "payload": undefined }',
    )
    status, _ = await refusal(connection_path("s"))
    assert status == 400
    client = Client("s", TOKEN_PAYLOAD)
    connected, _ = await client.connect()
    assert connected
    await client.close()


async def test_without_the_http_response_extension_a_refusal_is_a_close_before_accept(settings):
    """Daphne has no ``websocket.http.response``: closing before accepting makes it answer 403."""
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "tests.support.hooks.reject_all"}
    output = await refusal(connection_path("s"), extensions=False)
    assert output == {"type": "websocket.close"}


async def test_validator_gets_the_payload_and_the_store_id(settings):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "tests.support.hooks.reject_all"}
    status, body = await refusal(connection_path("the-store", {"a": 1}))
    assert status == 400
    assert "no entry to the-store" in body


async def test_a_mount_can_override_the_validator():
    seen = []

    async def only_alice(payload, context):
        seen.append((payload, context.store_id, context.scope["path"]))
        if payload != {"user": "alice"}:
            raise PermissionError("alice only")

    app = URLRouter([re_path(r"^sync/websocket$", V03Consumer.as_asgi(validate_payload=only_alice))])
    status, body = await refusal(connection_path("s", {"user": "bob"}, path="/sync/websocket"), app=app)
    assert status == 400 and "alice only" in body
    client = Client("s", {"user": "alice"}, path="/sync/websocket", app=app)
    assert (await client.connect())[0]
    await client.close()
    assert seen[-1] == ({"user": "alice"}, "s", "/sync/websocket")


async def test_payload_is_decoded_from_the_clients_double_encoding(settings):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "tests.support.hooks.reject_all"}
    # What makeCfSync sends for {"authToken":"insecure-token-change-me"}.
    path = "/websocket?storeId=s&payload=%257B%2522authToken%2522%253A%2522insecure-token-change-me%2522%257D"
    from syncapp.server import handshake

    assert handshake.parse_search_params(path.split("?")[1]) == ("s", TOKEN_PAYLOAD)


async def test_allowed_origins_admit_listed_origins_and_clients_without_one(settings):
    settings.LIVESYNC = {"ALLOWED_ORIGINS": ["https://app.example"]}
    status, body = await refusal(connection_path("s"), headers=[(b"origin", b"https://evil.example")])
    assert (status, body) == (403, "Origin not allowed")
    for headers in ([(b"origin", b"https://app.example")], None):
        client = Client("s", headers=headers)
        assert (await client.connect())[0]
        await client.close()


def test_the_connection_path_matches_what_the_real_client_builds():
    recorded = "/websocket?storeId=s&payload=%257B%2522authToken%2522%253A%2522insecure-token-change-me%2522%257D"
    assert connection_path("s", TOKEN_PAYLOAD) == recorded


async def test_a_refused_handshake_is_logged_once_with_its_reason(settings, caplog):
    """Under daphne the client sees only 403: the operator reads why in the log."""
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "tests.support.hooks.reject_all"}
    with caplog.at_level("WARNING", logger="syncapp"):
        await refusal(connection_path("guarded-store"), extensions=False)
    (record,) = [r for r in caplog.records if r.name == "syncapp"]
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert "'guarded-store'" in message and "400" in message and "no entry to guarded-store" in message


@pytest.mark.parametrize(
    "mount",
    [
        lambda target: V03Consumer.as_asgi(validate_payload=target),
        lambda target: V04WsConsumer.as_asgi(validate_payload=target),
        lambda target: V04HttpEndpoint(validate_payload=target),
    ],
    ids=["0.3 ws", "0.4 ws", "0.4 http"],
)
def test_a_mounts_validator_that_cannot_be_imported_stops_the_server_at_start(mount):
    with pytest.raises(ImproperlyConfigured, match="tests.support.hooks.nope"):
        mount("tests.support.hooks.nope")
    with pytest.raises(ImproperlyConfigured, match="not callable"):
        mount("tests.support.hooks.seen")
    assert mount("tests.support.hooks.reject_all") is not None
