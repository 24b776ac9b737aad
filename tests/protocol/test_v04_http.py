"""The 0.4 HTTP endpoint (``makeHttpSync``): one POST per RPC, a JSON array back, refusals as the reference's."""

import json

import pytest
from django.test import override_settings

from syncapp import storage
from syncapp.storage import db
from tests.support.v04_client import event, events, http_call, pull_payload, push_payload, request

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


async def call(store_id, body, **kwargs):
    status, headers, raw = await http_call(body, store_id, **kwargs)
    return status, headers, (json.loads(raw) if headers.get("content-type") == "application/json" else raw.decode())


async def test_ping_answers_pong_exit(store_id):
    status, headers, replies = await call(store_id, request("12", "SyncHttpRpc.Ping", {"storeId": store_id}))
    assert (status, headers["content-type"]) == (200, "application/json")
    assert replies == [
        {"_tag": "Exit", "requestId": "12", "exit": {"_tag": "Success", "value": {"_tag": "SyncMessage.Pong"}}}
    ]


async def test_push_then_pull_in_pages_ending_with_exit(store_id):
    for first in (1, 101, 201):
        batch = events(first, min(first + 99, 250))
        _, _, replies = await call(store_id, request(str(first), "SyncHttpRpc.Push", push_payload(store_id, batch)))
        assert replies == [{"_tag": "Exit", "requestId": str(first), "exit": {"_tag": "Success", "value": {}}}]
    _, _, replies = await call(store_id, request("4", "SyncHttpRpc.Pull", pull_payload(store_id)))
    *chunks, exit_frame = replies
    assert [len(chunk["values"][0]["batch"]) for chunk in chunks] == [100, 100, 50]
    assert [chunk["values"][0]["pageInfo"] for chunk in chunks] == [
        {"_tag": "MoreKnown", "remaining": 150},
        {"_tag": "MoreKnown", "remaining": 50},
        {"_tag": "NoMore"},
    ]
    assert exit_frame == {"_tag": "Exit", "requestId": "4", "exit": {"_tag": "Success"}}
    backend_id = chunks[0]["values"][0]["backendId"]
    _, _, replies = await call(
        store_id, request("5", "SyncHttpRpc.Pull", pull_payload(store_id, None, 250, backend_id))
    )
    assert replies[0]["values"] == [{"batch": [], "pageInfo": {"_tag": "NoMore"}, "backendId": backend_id}]


async def test_stale_push_and_foreign_backend_id_fail_as_the_reference(store_id):
    await call(store_id, request("1", "SyncHttpRpc.Push", push_payload(store_id, events(1, 3))))
    _, _, [stale] = await call(store_id, request("2", "SyncHttpRpc.Push", push_payload(store_id, [event(2)])))
    assert stale["exit"]["cause"] == {
        "_tag": "Fail",
        "error": {"minimumExpectedNum": 3, "providedNum": 1, "_tag": "ServerAheadError"},
    }
    _, _, [mismatch] = await call(
        store_id, request("3", "SyncHttpRpc.Pull", pull_payload(store_id, None, 1, "stale-backend-id"))
    )
    assert mismatch["exit"]["cause"]["error"]["_tag"] == "BackendIdMismatchError"
    assert mismatch["exit"]["cause"]["error"]["received"] == "stale-backend-id"
    assert await db.run(storage.head, store_id) == 3


async def test_unknown_tag_is_a_defect_and_bad_payload_dies(store_id):
    _, _, replies = await call(store_id, request("8", "SyncHttpRpc.Nope", {}))
    assert replies == [{"_tag": "Defect", "defect": "Unknown request tag: SyncHttpRpc.Nope"}]
    _, _, [died] = await call(store_id, request("9", "SyncHttpRpc.Pull", {"storeId": store_id}))
    assert died["exit"]["cause"]["_tag"] == "Die"
    assert died["exit"]["cause"]["defect"].endswith('└─ ["cursor"]\n   └─ is missing')


async def test_non_json_body_is_a_syntax_error_defect(store_id):
    status, _, replies = await call(store_id, b"", method="GET")
    assert status == 200
    assert replies[0]["_tag"] == "Defect" and replies[0]["defect"]["name"] == "SyntaxError"


@override_settings(LIVESYNC={"VALIDATE_PAYLOAD": "tests.support.hooks.reject_all"})
async def test_rejected_payload_is_400_with_the_references_text(store_id):
    status, _, body = await call(
        store_id, request("1", "SyncHttpRpc.Ping", {"storeId": store_id}), payload={"authToken": "nope"}
    )
    assert status == 400
    assert (
        body == f'UnknownError: {{ "cause": Error: no entry to {store_id}, "note": undefined, "payload": undefined }}'
    )


async def test_ws_transport_without_upgrade_is_426(store_id):
    status, _, body = await call(store_id, b"", method="GET", transport="ws")
    assert (status, body) == (426, "Durable Object expected Upgrade: websocket")


@override_settings(LIVESYNC={"ENABLE_CORS": True})
async def test_cors_preflight_and_headers_when_enabled(store_id):
    requested = (b"access-control-request-headers", b"content-type,x-livestore-store-id")
    status, headers, _ = await call(store_id, b"", method="OPTIONS", headers=[requested])
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Headers"] == "content-type,x-livestore-store-id"
    _, headers, _ = await call(store_id, request("1", "SyncHttpRpc.Ping", {"storeId": store_id}))
    assert headers["Access-Control-Allow-Origin"] == "*"


@override_settings(LIVESYNC={"MAX_MESSAGE_BYTES": 10_000})
async def test_oversized_body_is_refused_and_nothing_stored(store_id):
    batch = [event(1, args={"text": "x" * 20_000})]
    status, _, _ = await call(store_id, request("1", "SyncHttpRpc.Push", push_payload(store_id, batch)))
    assert status == 413
    assert await db.run(storage.head, store_id) == 0


async def test_hostile_store_id_is_refused_before_any_rpc():
    status, _, body = await call("x" * 300, request("1", "SyncHttpRpc.Ping", {"storeId": "x"}))
    assert (status, body) == (400, "Invalid path")


async def test_pushes_over_http_leave_nothing_behind_in_the_process_hub(store_id, connect):
    """An HTTP push to a store with no socket in this process has no one to tell; the hub keeps nothing for
    it, so pushes to ever more stores do not grow the process."""
    from syncapp.fanout.hub import existing_hub

    await connect()  # a socket of another store: this process serves sockets, so it has a hub
    for number in range(5):
        _, _, replies = await call(
            f"{store_id}-{number}", request("1", "SyncHttpRpc.Push", push_payload(f"{store_id}-{number}", events(1, 1)))
        )
        assert replies[0]["exit"]["_tag"] == "Success"
    hub = existing_hub()
    assert hub is not None, "an announcement went out without a hub"
    pushed = {f"{store_id}-{number}" for number in range(5)}
    assert not pushed & {*hub.members, *hub.last_seen, *hub.suspect_heads}
