"""The reference worker's plain-HTTP answers, compared with the recorded transcripts."""

import pytest

from tests.support.transcripts import probe

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["http_get_root", "http_invalid_path", "http_post_root", "http_options_root"])
def test_http_answers_match_the_reference(client, name):
    recorded = probe(name)
    request = recorded["request"]
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request["headers"].items()}
    response = client.generic(request["method"], request["path"], **headers)
    assert response.status_code == recorded["httpStatus"]
    assert response.content.decode() == recorded["httpBody"]
    assert response["Content-Type"].startswith("text/plain")


def test_websocket_path_without_upgrade_is_426(client):
    recorded = probe("http_websocket_without_upgrade")
    response = client.get(recorded["request"]["path"])
    assert response.status_code == 426
    assert response.content.decode() == recorded["httpBody"]


def test_websocket_path_without_store_id_is_500_as_the_reference(client):
    response = client.get("/websocket")
    assert response.status_code == 500
    assert response.content.decode() == probe("ws_no_query_at_all")["httpBody"]


def test_cors_when_enabled(client, settings):
    settings.LIVESYNC = {"ENABLE_CORS": True}
    preflight = client.options("/", HTTP_ORIGIN="http://app", HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-a")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert preflight["Access-Control-Allow-Headers"] == "x-a"
    assert client.get("/")["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"


def test_admin_is_served_beside_the_sync_endpoint(client):
    assert client.get("/admin/login/").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_healthz_reports_database_and_channel_layer(async_client):
    response = await async_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok"}
