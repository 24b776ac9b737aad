"""One hook policy for both generations: request hooks decide, response hooks only observe."""

import json

import pytest

from tests.support.v03_client import Client, events
from tests.support.v04_client import RpcClient, http_call, push_payload, request

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

RESPONSE_HOOKS_FAIL = {"ON_PUSH_RES": "tests.support.hooks.fail", "ON_PULL_RES": "tests.support.hooks.fail"}


async def test_failing_response_hooks_change_nothing_a_0_3_client_sees(settings, caplog, store_id):
    settings.LIVESYNC = RESPONSE_HOOKS_FAIL
    pusher, other = Client(store_id), Client(store_id)
    assert (await pusher.connect())[0] and (await other.connect())[0]
    await other.pull_all("first-pull")
    await pusher.push("p", events(1, 2))
    assert await pusher.recv() == {"_tag": "WSMessage.PushAck", "requestId": "p"}
    echo = await pusher.recv()
    assert echo["_tag"] == "WSMessage.PullRes" and len(echo["batch"]) == 2
    assert (await other.recv())["batch"] == echo["batch"]
    assert await pusher.nothing(), "a second answer for an acknowledged push"
    [chunk] = await other.pull_all("pull")
    assert len(chunk["batch"]) == 2
    assert any("ON_PUSH_RES hook failed" in r.getMessage() for r in caplog.records)
    assert any("ON_PULL_RES hook failed" in r.getMessage() for r in caplog.records)
    await pusher.close()
    await other.close()


async def test_a_failing_response_hook_during_a_repair_leaves_the_0_3_socket_serving(settings, caplog, store_id):
    """A retried push is answered by a repair from storage: the hook fails on its frames, the client gets them."""
    settings.LIVESYNC = RESPONSE_HOOKS_FAIL
    first = Client(store_id)
    assert (await first.connect())[0]
    await first.push("p", events(1, 2))
    assert (await first.recv())["_tag"] == "WSMessage.PushAck"
    await first.recv()
    retrying = Client(store_id)
    assert (await retrying.connect())[0]
    await retrying.push("p-again", events(1, 2))
    assert await retrying.recv() == {"_tag": "WSMessage.PushAck", "requestId": "p-again"}
    repair = await retrying.recv()
    assert [item["eventEncoded"]["seqNum"] for item in repair["batch"]] == [1, 2]
    await retrying.push("next", events(3, 3))
    assert await retrying.recv() == {"_tag": "WSMessage.PushAck", "requestId": "next"}
    assert [item["eventEncoded"]["seqNum"] for item in (await retrying.recv())["batch"]] == [3]
    assert sum("ON_PULL_RES hook failed" in r.getMessage() for r in caplog.records) >= 2
    await first.close()
    await retrying.close()


async def test_failing_response_hooks_change_nothing_a_0_4_client_sees(settings, store_id):
    settings.LIVESYNC = RESPONSE_HOOKS_FAIL
    client = RpcClient(store_id)
    assert (await client.connect())[0]
    await client.push("1", events(1, 2))
    assert (await client.recv())["exit"]["_tag"] == "Success"
    chunks, done = await client.pull_pages("2")
    assert done["exit"]["_tag"] == "Success" and len(chunks[0]["values"][0]["batch"]) == 2
    await client.close()
    body = request("3", "SyncHttpRpc.Push", push_payload(store_id, events(3, 3)))
    status, _, answer = await http_call(body, store_id)
    assert status == 200 and json.loads(answer)[0]["exit"]["_tag"] == "Success"


@pytest.mark.parametrize("hook", ["ON_PUSH", "ON_PULL"])
async def test_a_failing_request_hook_rejects_with_its_message_on_both_generations(settings, store_id, hook):
    settings.LIVESYNC = {hook: "tests.support.hooks.fail"}
    old = Client(store_id)
    assert (await old.connect())[0]
    if hook == "ON_PUSH":
        await old.push("p", events(1, 1))
    else:
        await old.send({"_tag": "WSMessage.PullReq", "requestId": "p"})
    assert await old.recv() == {"_tag": "WSMessage.Error", "requestId": "p", "message": "hook failed on purpose"}
    await old.close()
    new = RpcClient(store_id)
    assert (await new.connect())[0]
    if hook == "ON_PUSH":
        await new.push("1", events(1, 1))
    else:
        await new.pull("1", live=False)
    answer = await new.recv()
    assert answer["exit"]["cause"]["error"] == {"cause": "hook failed on purpose", "_tag": "UnknownError"}
    await new.close()
