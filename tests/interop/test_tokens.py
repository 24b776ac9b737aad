"""Real LiveStore clients with signed tokens (``syncapp.tokens``) in their ``syncPayload``.

A daphne process runs the ready validator ``syncapp.tokens.validate_token``; the test issues tokens with the
server's ``SECRET_KEY``. Clients of both generations with a valid token sync; clients with an expired token are
refused before the upgrade (ws) or on every request (http), and never see the store.
"""

import pytest
from django.test import override_settings

from syncapp import tokens
from tests.interop.conftest import V04_DIR, require_node_project
from tests.interop.expectations import assert_synced, rows
from tests.support.databases import sqlite_daphne

pytestmark = pytest.mark.interop

SERVER_SECRET_KEY = "the-token-test-server-secret-key-that-signs-every-token"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    settings = {"LIVESYNC_VALIDATE_PAYLOAD": "syncapp.tokens.validate_token", "DJANGO_SECRET_KEY": SERVER_SECRET_KEY}
    with sqlite_daphne(tmp_path_factory.mktemp("tokens"), settings) as server:
        yield server


def issued(store_id):
    """A valid and an expired token for ``store_id``, signed as the server signs."""
    with override_settings(SECRET_KEY=SERVER_SECRET_KEY):
        return tokens.issue(store_id), tokens.issue(store_id, expires_in=-1)


def assert_members_synced_and_intruder_refused(result):
    for member in result["members"]:
        assert member["todos"] == rows(f"member-{n}" for n in range(5)), member["clientId"]
        assert_synced(member, 5)
    assert result["intruder"]["todos"] == rows(["intruder-0"])
    assert result["intruder"]["upstreamHead"] == 0


def test_0_3_clients_sync_with_a_signed_token_and_are_refused_with_an_expired_one(token_server, scenarios):
    store_id = scenarios.new_store_id("tokens-v03")
    good, expired = issued(store_id)
    result = scenarios.run("auth", [token_server], store_id=store_id, args=["--token", good, "--wrong-token", expired])
    assert_members_synced_and_intruder_refused(result)
    assert result["intruderWire"] == {"connectionsOpened": 0, "framesReceived": 0}
    assert "the token has expired" in token_server.log_tail(400)


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_0_4_clients_sync_with_a_signed_token_and_are_refused_with_an_expired_one(
    token_server, v04_scenarios, transport
):
    require_node_project(V04_DIR)
    store_id = v04_scenarios.new_store_id(f"tokens-v04-{transport}")
    good, expired = issued(store_id)
    args = ["--token", good, "--wrong-token", expired, "--transport", transport]
    result = v04_scenarios.run("auth", [token_server], store_id=store_id, args=args)
    assert_members_synced_and_intruder_refused(result)
