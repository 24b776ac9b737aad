"""Who is connecting: the session's user and a context for the validator and the hooks; read-only connections.

Both generations and both 0.4 transports, in process (the behaviour does not depend on the server).
"""

import json
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.contrib.auth.models import User

from syncapp.context import READ_ONLY_MESSAGE
from syncapp.routing import TransportRouter, websocket_urlpatterns
from tests.support import hooks
from tests.support.v03_client import Client, events
from tests.support.v04_client import RpcClient, http_call, push_payload, request

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

SETTINGS = {
    "VALIDATE_PAYLOAD": "tests.support.hooks.record_context",
    "ON_PUSH": "tests.support.hooks.record_with_context",
}


@pytest.fixture
def recording(settings):
    settings.LIVESYNC = SETTINGS
    hooks.contexts.clear()
    hooks.seen.clear()


async def session_cookie(client, user):
    """The cookie header of a session in which ``user`` is logged in."""
    await sync_to_async(client.force_login)(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def app_03():
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def app_04():
    return TransportRouter(None)


async def test_the_validator_and_hooks_see_the_session_user_over_0_3(recording, client, store_id):
    user = await User.objects.acreate(username="alice")
    socket = Client(store_id, {"authToken": "t"}, headers=[await session_cookie(client, user)], app=app_03())
    assert (await socket.connect())[0]
    await socket.push("p", events(1, 1))
    assert (await socket.recv())["_tag"] == "WSMessage.PushAck"
    await socket.close()
    (context,) = hooks.contexts
    assert (context.store_id, context.generation, context.payload) == (store_id, "0.3", {"authToken": "t"})
    assert context.user == user and context.store_id == store_id
    assert "cookie" in context.headers and context.scope["path"] == "/websocket"
    (message, hook_context) = hooks.seen[0]
    assert message["_tag"] == "WSMessage.PushReq" and hook_context is context


async def test_the_validator_and_hooks_see_the_session_user_over_0_4_ws_and_http(recording, client, store_id):
    user = await User.objects.acreate(username="bob")
    cookie = await session_cookie(client, user)
    socket = RpcClient(store_id, app=app_04())
    socket.communicator.scope["headers"] = [cookie]
    assert (await socket.connect())[0]
    await socket.push("1", events(1, 1))
    assert (await socket.recv())["_tag"] == "Exit"
    await socket.close()
    body = request("2", "SyncHttpRpc.Push", push_payload(store_id, events(2, 2)))
    status, _, answer = await http_call(body, store_id, headers=[cookie])
    assert status == 200 and json.loads(answer)[0]["exit"]["_tag"] == "Success"
    assert [(c.generation, c.user) for c in hooks.contexts] == [("0.4", user), ("0.4", user)]
    assert [c.store_id for _, c in hooks.seen] == [store_id, store_id]


async def test_without_a_session_the_user_is_anonymous(recording, store_id):
    socket = Client(store_id, app=app_03())
    assert (await socket.connect())[0]
    await socket.close()
    assert hooks.contexts[0].user.is_anonymous


async def test_a_read_only_0_3_connection_pulls_and_follows_but_cannot_push(recording, store_id):
    writer = Client(store_id, {"role": "writer"}, app=app_03())
    assert (await writer.connect())[0]
    await writer.push("w", events(1, 2))
    assert (await writer.recv())["_tag"] == "WSMessage.PushAck"
    await writer.recv()
    reader = Client(store_id, {"role": "reader"}, app=app_03())
    assert (await reader.connect())[0]
    [chunk] = await reader.pull_all("pull")
    assert [e["eventEncoded"]["seqNum"] for e in chunk["batch"]][-1:] == [2]
    await reader.push("r", events(3, 3, client_id="reader"))
    assert await reader.recv() == {"_tag": "WSMessage.Error", "requestId": "r", "message": READ_ONLY_MESSAGE}
    await writer.push("w2", events(3, 3))
    await writer.recv()
    live = await reader.recv()
    assert live["_tag"] == "WSMessage.PullRes" and live["batch"][0]["eventEncoded"]["clientId"] == "client"
    await writer.close()
    await reader.close()


async def test_a_read_only_0_4_connection_cannot_push_over_ws_or_http(recording, store_id):
    reader = RpcClient(store_id, {"role": "reader"}, app=app_04())
    assert (await reader.connect())[0]
    await reader.push("1", events(1, 1))
    exit_frame = await reader.recv()
    assert exit_frame["exit"]["cause"]["error"] == {"cause": READ_ONLY_MESSAGE, "_tag": "UnknownError"}
    chunks, done = await reader.pull_pages("2")
    assert done["exit"]["_tag"] == "Success" and chunks[0]["values"][0]["batch"] == []
    await reader.close()
    body = request("3", "SyncHttpRpc.Push", push_payload(store_id, events(1, 1)))
    status, _, answer = await http_call(body, store_id, payload={"role": "reader"})
    assert status == 200
    assert json.loads(answer)[0]["exit"]["cause"]["error"]["cause"] == READ_ONLY_MESSAGE


def docs_access_examples():
    """The code blocks of the how-to "Authenticate clients", run as a user would paste them."""
    from tests.support.docs_examples import run_python_blocks

    return run_python_blocks("howto/authenticate.md")


class FakeUser:
    def __init__(self, *perms, authenticated=True):
        self.perms = set(perms)
        self.is_authenticated = authenticated

    def has_perm(self, perm):
        return perm in self.perms


def test_the_docs_access_examples_do_what_they_say():
    from syncapp.context import READ_ONLY, SyncContext
    from syncapp.tokens import verify

    examples = docs_access_examples()
    with pytest.raises(PermissionError):
        examples["members_only"](None, SyncContext("s", None, "0.3", user=FakeUser(authenticated=False)))
    assert examples["members_only"](None, SyncContext("s", None, "0.3", user=FakeUser())) is None
    viewers_read = examples["viewers_read"]
    assert viewers_read(None, SyncContext("s", None, "0.4", user=FakeUser("notes.change_note"))) is None
    assert viewers_read(None, SyncContext("s", None, "0.4", user=FakeUser("notes.view_note"))) == READ_ONLY
    with pytest.raises(PermissionError):
        viewers_read(None, SyncContext("s", None, "0.4", user=FakeUser()))
    assert verify(examples["token"], "team-7/notes") is None
    assert examples["LIVESYNC"] == {"VALIDATE_PAYLOAD": "syncapp.tokens.validate_token"}


async def test_under_the_strict_creation_policy_only_existing_stores_are_served(settings, store_id):
    from channels.testing import ApplicationCommunicator
    from django.core.management import call_command

    from tests.support.v03_client import application, connection_path

    settings.LIVESYNC = {"CREATE_STORES": False}
    scope = {
        "type": "websocket",
        "path": "/websocket",
        "query_string": connection_path(store_id).split("?", 1)[1].encode(),
        "headers": [],
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }
    refused = ApplicationCommunicator(application, scope)
    await refused.send_input({"type": "websocket.connect"})
    start = await refused.receive_output(5)
    body = await refused.receive_output(5)
    assert (start["status"], body["body"]) == (404, f"Unknown store: {store_id}".encode())
    status, _, answer = await http_call(request("1", "SyncHttpRpc.Ping", {"storeId": store_id}), store_id)
    assert (status, answer) == (404, f"Unknown store: {store_id}".encode())
    await sync_to_async(call_command)("livesync_create", store_id, stdout=StringIO())
    writer = Client(store_id)
    assert (await writer.connect())[0]
    await writer.push("p", events(1, 1))
    assert (await writer.recv())["_tag"] == "WSMessage.PushAck"
    await writer.close()


async def test_pushes_past_a_connections_limits_are_refused_and_write_nothing(settings, store_id):
    settings.LIVESYNC = {"MAX_EVENTS_PER_PUSH": 3, "MAX_PUSHES_PER_SECOND": 1}
    writer = Client(store_id)
    assert (await writer.connect())[0]
    await writer.push("big", events(1, 4))
    assert (await writer.recv())["message"] == "Push refused: more than 3 events in one push"
    answers = []
    for seq_num in range(1, 5):
        await writer.push(f"p{seq_num}", events(seq_num, seq_num))
        answers.append(await writer.recv())
        if answers[-1]["_tag"] == "WSMessage.PushAck":
            await writer.recv()
    # A burst of two is allowed at one push per second; the next ones in the same instant are refused.
    assert [a["_tag"] for a in answers] == [
        "WSMessage.PushAck",
        "WSMessage.PushAck",
        "WSMessage.Error",
        "WSMessage.Error",
    ]
    assert answers[2]["message"] == "Push refused: more than 1 pushes per second on this connection"
    [chunk] = await writer.pull_all("pull")
    assert [item["eventEncoded"]["seqNum"] for item in chunk["batch"]] == [1, 2]
    await writer.close()
    rpc = RpcClient(store_id, app=app_04())
    assert (await rpc.connect())[0]
    await rpc.push("1", events(3, 6))
    assert (await rpc.recv())["exit"]["cause"]["error"]["cause"] == "Push refused: more than 3 events in one push"
    await rpc.close()


async def test_store_access_rows_decide_what_the_session_user_may_sync(settings, client, store_id):
    from django.contrib.auth.models import Group

    from syncapp.models import StoreAccess

    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "syncapp.access.user_access"}
    writer = await User.objects.acreate(username="writer")
    reader = await User.objects.acreate(username="reader")
    stranger = await User.objects.acreate(username="stranger")
    admin = await User.objects.acreate(username="root", is_superuser=True)
    readers = await Group.objects.acreate(name="readers")
    await reader.groups.aadd(readers)
    await StoreAccess.objects.acreate(pattern=f"{store_id[:8]}*", user=writer, access=StoreAccess.WRITE)
    await StoreAccess.objects.acreate(pattern=store_id, group=readers, access=StoreAccess.READ)

    async def connect(user):
        headers = [] if user is None else [await session_cookie(client, user)]
        socket = Client(store_id, headers=headers, app=app_03())
        return socket if (await socket.connect())[0] else None

    async def push_answer(socket, seq_num):
        await socket.push(f"p{seq_num}", events(seq_num, seq_num))
        answer = await socket.recv()
        if answer["_tag"] == "WSMessage.PushAck":
            await socket.recv()
        await socket.close()
        return answer.get("message", answer["_tag"])

    assert await push_answer(await connect(writer), 1) == "WSMessage.PushAck"  # by the prefix rule
    assert await push_answer(await connect(admin), 2) == "WSMessage.PushAck"
    assert await push_answer(await connect(reader), 3) == READ_ONLY_MESSAGE  # by its group's rule
    assert await connect(stranger) is None
    assert await connect(None) is None


async def test_store_access_rows_apply_to_0_4_ws_and_http_alike(settings, client, store_id):
    from syncapp.models import StoreAccess

    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "syncapp.access.user_access"}
    writer = await User.objects.acreate(username="writer04")
    reader = await User.objects.acreate(username="reader04")
    stranger = await User.objects.acreate(username="stranger04")
    await StoreAccess.objects.acreate(pattern=store_id, user=writer, access=StoreAccess.WRITE)
    await StoreAccess.objects.acreate(pattern=store_id, user=reader, access=StoreAccess.READ)

    async def ws_push(user, seq_num):
        socket = RpcClient(store_id, app=app_04())
        socket.communicator.scope["headers"] = [await session_cookie(client, user)]
        if not (await socket.connect())[0]:
            return "refused"
        await socket.push("1", events(seq_num, seq_num))
        answer = await socket.recv()
        await socket.close()
        return (
            answer["exit"]["_tag"] if answer["exit"]["_tag"] == "Success" else answer["exit"]["cause"]["error"]["cause"]
        )

    async def http_push(user, seq_num):
        body = request("1", "SyncHttpRpc.Push", push_payload(store_id, events(seq_num, seq_num)))
        status, _, answer = await http_call(body, store_id, headers=[await session_cookie(client, user)])
        if status != 200:
            return status
        exit_frame = json.loads(answer)[0]["exit"]
        return exit_frame["_tag"] if exit_frame["_tag"] == "Success" else exit_frame["cause"]["error"]["cause"]

    assert await ws_push(writer, 1) == "Success"
    assert await http_push(writer, 2) == "Success"
    assert await ws_push(reader, 3) == READ_ONLY_MESSAGE
    assert await http_push(reader, 3) == READ_ONLY_MESSAGE
    assert await ws_push(stranger, 3) == "refused"
    assert await http_push(stranger, 3) == 400
