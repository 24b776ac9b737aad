"""Signed, store-scoped, expiring tokens: issued by the project, checked by the ready validator."""

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command

from syncapp import tokens
from syncapp.context import READ_ONLY, SyncContext
from tests.support.v03_client import Client, events
from tests.support.v04_client import http_call, push_payload, request

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]


def context(store_id):
    return SyncContext(store_id, None, "0.3")


def test_a_token_opens_the_stores_it_names_until_it_expires(monkeypatch):
    token = tokens.issue(["doc-1", "team-a/*"])
    for store_id in ("doc-1", "team-a/notes", "team-a/"):
        assert tokens.validate_token({"authToken": token}, context(store_id)) is None
    for store_id in ("doc-2", "team-b/notes", "doc-1x"):
        with pytest.raises(tokens.InvalidToken, match="does not open store"):
            tokens.validate_token({"authToken": token}, context(store_id))
    later = time.time() + tokens.DEFAULT_LIFETIME_SECONDS + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.validate_token({"authToken": token}, context("doc-1"))


def test_tampered_missing_and_foreign_tokens_are_refused(settings):
    token = tokens.issue("doc")
    with pytest.raises(tokens.InvalidToken, match="signature"):
        tokens.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "doc")
    with pytest.raises(tokens.InvalidToken, match="no authToken"):
        tokens.validate_token({}, context("doc"))
    with pytest.raises(tokens.InvalidToken, match="no authToken"):
        tokens.validate_token(None, context("doc"))
    settings.SECRET_KEY = "another project's key"
    with pytest.raises(tokens.InvalidToken, match="signature"):
        tokens.verify(token, "doc")


def test_a_read_only_token_accepts_the_connection_for_reading():
    assert tokens.verify(tokens.issue("doc", read_only=True), "doc") == READ_ONLY


def test_the_command_prints_a_token_that_verifies():
    out = StringIO()
    call_command("livesync_token", "doc", "team/*", "--read-only", "--expires-in", "60", stdout=out)
    token = out.getvalue().strip()
    assert tokens.verify(token, "team/x") == READ_ONLY


async def test_both_generations_take_a_token_and_refuse_an_expired_one(settings, store_id):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "syncapp.tokens.validate_token"}
    good, expired = tokens.issue(store_id), tokens.issue(store_id, expires_in=-1)
    writer = Client(store_id, {"authToken": good})
    assert (await writer.connect())[0]
    await writer.push("p", events(1, 1))
    assert (await writer.recv())["_tag"] == "WSMessage.PushAck"
    await writer.close()
    assert not (await Client(store_id, {"authToken": expired}).connect())[0]
    body = request("1", "SyncHttpRpc.Push", push_payload(store_id, events(2, 2)))
    status, _, answer = await http_call(body, store_id, payload={"authToken": good})
    assert status == 200 and json.loads(answer)[0]["exit"]["_tag"] == "Success"
    status, _, answer = await http_call(body, store_id, payload={"authToken": expired})
    assert status == 400 and b"the token has expired" in answer
