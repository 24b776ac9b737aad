"""Issue 36, part 6: limits a client cannot walk around by opening more connections or switching transport.

Pushes and events per second are counted per client (the session's user, a token's subject, else the address)
over all its WebSockets and 0.4 HTTP requests together, and open WebSockets per client and per address; across
processes through Redis (the last test, two daphne processes on PostgreSQL + Redis). In-process tests run on
whichever backend the run uses: on the PostgreSQL + Redis pass the counts go through Redis as in production.
"""

import asyncio
import json
import random
import subprocess
import sys
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.contrib.auth.models import User

from syncapp import tokens
from syncapp.routing import TransportRouter, websocket_urlpatterns
from tests.support.v03_client import Client, events
from tests.support.v04_client import RpcClient, http_call, push_payload, request

pytestmark = [pytest.mark.security, pytest.mark.django_db(transaction=True)]

RATE = 5
# How long the floods below push for.
FLOOD_SECONDS = 2.5
CROSS_PROCESS_FLOOD_SECONDS = 4.0
WHOSE = "this token's subject"


def app_03():
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def app_04():
    return TransportRouter(None)


async def new_user(**fields):
    """A user with an id no other run shares (the counts of the PostgreSQL + Redis pass live in a shared Redis)."""
    name = f"u{uuid.uuid4().hex[:10]}"
    return await User.objects.acreate(id=random.randint(10**6, 10**9), username=name, **fields)


async def session_cookie(client, user):
    await sync_to_async(client.force_login)(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def random_address():
    return f"203.0.{random.randint(0, 255)}.{random.randint(1, 254)}"


class Flood:
    """Pushes as fast as the answers come, on sockets and over HTTP, each on a store of its own; counts answers."""

    def __init__(self):
        self.acked = 0
        self.refusals = []

    async def v03_socket(self, socket, until):
        seq = 1
        while time.monotonic() < until:
            await socket.push(f"p{seq}", events(seq, seq))
            answer = await socket.recv()
            if answer["_tag"] == "WSMessage.PushAck":
                self.acked += 1
                await socket.recv()  # its own events, pushed back to it
                seq += 1
            else:
                self.refusals.append(answer["message"])

    async def v04_socket(self, socket, until):
        seq = 1
        while time.monotonic() < until:
            await socket.push(f"p{seq}", events(seq, seq))
            answer = await socket.recv()
            if answer["exit"]["_tag"] == "Success":
                self.acked += 1
                seq += 1
            else:
                self.refusals.append(answer["exit"]["cause"]["error"]["cause"])

    async def http(self, store_id, until, payload=None, headers=()):
        seq = 1
        while time.monotonic() < until:
            body = request(str(seq), "SyncHttpRpc.Push", push_payload(store_id, events(seq, seq)))
            status, _, answer = await http_call(body, store_id, payload=payload, headers=headers)
            assert status == 200, answer
            exit_message = json.loads(answer)[0]["exit"]
            if exit_message["_tag"] == "Success":
                self.acked += 1
                seq += 1
            else:
                self.refusals.append(exit_message["cause"]["error"]["cause"])


async def flood(sockets, http_store, payload=None, headers=()):
    """``(pushes acknowledged, refusal texts, seconds)`` of every socket and an HTTP client pushing at once."""
    result = Flood()
    started = time.monotonic()
    until = started + FLOOD_SECONDS
    tasks = [
        result.v03_socket(socket, until) if type(socket) is Client else result.v04_socket(socket, until)
        for socket in sockets
    ]
    tasks.append(result.http(http_store, until, payload, headers))
    await asyncio.gather(*tasks)
    return result.acked, result.refusals, time.monotonic() - started


def assert_about_the_rate(acked, seconds, rate=RATE):
    # A sliding second: at most ``rate`` in any second, so at most rate * (seconds + 1) over a run that starts
    # anywhere within a second. And the limit lets some through.
    assert rate <= acked <= rate * (seconds + 1), (acked, seconds)


async def test_one_users_pushes_over_ten_sockets_and_http_are_limited_together(settings, client, store_id):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "syncapp.access.user_access", "MAX_PUSHES_PER_SECOND_PER_CLIENT": RATE}
    user = await new_user(is_superuser=True)
    cookie = await session_cookie(client, user)
    sockets = []
    for index in range(10):
        if index % 2:
            socket = RpcClient(f"{store_id}-{index}", app=app_04())
            socket.communicator.scope["headers"] = [cookie]
        else:
            socket = Client(f"{store_id}-{index}", headers=[cookie], app=app_03())
        assert (await socket.connect())[0]
        sockets.append(socket)
    acked, refusals, seconds = await flood(sockets, f"{store_id}-http", headers=[cookie])
    for socket in sockets:
        await socket.close()
    assert_about_the_rate(acked, seconds)
    assert set(refusals) == {f"Push refused: more than {RATE} pushes per second for this user"}


async def test_one_token_subjects_pushes_are_limited_together_whatever_their_tokens(settings, store_id):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "syncapp.tokens.validate_token", "MAX_PUSHES_PER_SECOND_PER_CLIENT": RATE}
    subject = f"device-{uuid.uuid4().hex[:8]}"
    sockets = []
    for index in range(10):
        # A token per socket: the subject is what counts.
        payload = {"authToken": tokens.issue(f"{store_id}*", subject=subject)}
        socket = Client(f"{store_id}-{index}", payload) if index % 2 else RpcClient(f"{store_id}-{index}", payload)
        assert (await socket.connect())[0]
        sockets.append(socket)
    http_payload = {"authToken": tokens.issue(f"{store_id}*", subject=subject)}
    acked, refusals, seconds = await flood(sockets, f"{store_id}-http", payload=http_payload)
    for socket in sockets:
        await socket.close()
    assert_about_the_rate(acked, seconds)
    assert set(refusals) == {f"Push refused: more than {RATE} pushes per second for this token's subject"}
    # Another subject has its own allowance.
    other = Client(f"{store_id}-other", {"authToken": tokens.issue(f"{store_id}*", subject="someone else")})
    assert (await other.connect())[0]
    await other.push("o", events(1, 1))
    assert (await other.recv())["_tag"] == "WSMessage.PushAck"
    await other.close()


async def test_clients_without_a_user_or_subject_are_limited_per_address(settings, store_id):
    settings.LIVESYNC = {"MAX_EVENTS_PER_SECOND_PER_CLIENT": 3 * RATE}
    address = random_address()
    sockets = []
    for index in range(4):
        socket = Client(f"{store_id}-{index}")
        socket.communicator.scope["client"] = (address, 40000 + index)
        assert (await socket.connect())[0]
        sockets.append(socket)
    acked_events, refusals = 0, []
    until = time.monotonic() + FLOOD_SECONDS
    started = time.monotonic()

    async def push_threes(socket):
        nonlocal acked_events
        seq = 1
        while time.monotonic() < until:
            await socket.push(f"p{seq}", events(seq, seq + 2))
            answer = await socket.recv()
            if answer["_tag"] == "WSMessage.PushAck":
                acked_events += 3
                await socket.recv()
                seq += 3
            else:
                refusals.append(answer["message"])

    await asyncio.gather(*(push_threes(socket) for socket in sockets))
    seconds = time.monotonic() - started
    for socket in sockets:
        await socket.close()
    assert 3 * RATE <= acked_events <= 3 * RATE * (seconds + 1), (acked_events, seconds)
    assert set(refusals) == {f"Push refused: more than {3 * RATE} events per second from this address"}


async def test_the_per_connection_limits_hold_beside_the_per_client_one(settings, store_id):
    settings.LIVESYNC = {"MAX_PUSHES_PER_SECOND": 1, "MAX_PUSHES_PER_SECOND_PER_CLIENT": 3, "MAX_EVENTS_PER_PUSH": 2}
    address = random_address()
    first, second = Client(f"{store_id}-1"), Client(f"{store_id}-2")
    for socket in (first, second):
        socket.communicator.scope["client"] = (address, random.randint(1024, 65535))
        assert (await socket.connect())[0]
    await first.push("big", events(1, 3))
    assert (await first.recv())["message"] == "Push refused: more than 2 events in one push"

    async def answers(socket, count):
        tags = []
        for seq in range(1, count + 1):
            await socket.push(f"p{seq}", events(seq, seq))
            answer = await socket.recv()
            tags.append(answer["_tag"] if answer["_tag"] == "WSMessage.PushAck" else answer["message"])
            if answer["_tag"] == "WSMessage.PushAck":
                await socket.recv()
        return tags

    # The connection's burst of two, then its own limit; the client's third push on another socket, then the
    # client's limit.
    assert await answers(first, 3) == [
        "WSMessage.PushAck",
        "WSMessage.PushAck",
        "Push refused: more than 1 pushes per second on this connection",
    ]
    assert await answers(second, 2) == [
        "WSMessage.PushAck",
        "Push refused: more than 3 pushes per second from this address",
    ]
    await first.close()
    await second.close()


def upgrade_scope(store_id, address, headers=()):
    from tests.support.v03_client import connection_path

    return {
        "type": "websocket",
        "path": "/websocket",
        "query_string": connection_path(store_id).split("?", 1)[1].encode(),
        "headers": list(headers),
        "client": (address, random.randint(1024, 65535)),
        "subprotocols": [],
        # As under uvicorn: the refusal's status and text reach the client.
        "extensions": {"websocket.http.response": {}},
    }


async def open_socket(store_id, address, headers=()):
    """``(communicator, None)`` once accepted, or ``(None, (status, text))`` when refused."""
    from channels.testing import ApplicationCommunicator

    from tests.support.v03_client import application

    communicator = ApplicationCommunicator(application, upgrade_scope(store_id, address, headers))
    await communicator.send_input({"type": "websocket.connect"})
    first = await communicator.receive_output(5)
    if first["type"] == "websocket.accept":
        return communicator, None
    body = await communicator.receive_output(5)
    await communicator.wait(5)
    return None, (first["status"], body["body"].decode())


async def close_socket(communicator):
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await communicator.wait(5)


async def test_one_address_cannot_open_more_connections_than_its_cap(settings, store_id):
    settings.LIVESYNC = {"MAX_CONNECTIONS_PER_ADDRESS": 3}
    address = random_address()
    opened = [(await open_socket(f"{store_id}-{n}", address))[0] for n in range(3)]
    assert all(opened)
    refused = await open_socket(f"{store_id}-x", address)
    assert refused == (
        None,
        (429, "Too many connections: 3 already open from this address (MAX_CONNECTIONS_PER_ADDRESS)"),
    )
    # Another address is not affected, and a closed socket frees its place.
    other, _ = await open_socket(store_id, random_address())
    assert other is not None
    await close_socket(opened.pop())
    again, _ = await open_socket(f"{store_id}-y", address)
    assert again is not None
    for communicator in [*opened, other, again]:
        await close_socket(communicator)


async def test_behind_a_proxy_the_address_comes_from_the_trusted_header(settings, store_id):
    settings.LIVESYNC = {"MAX_CONNECTIONS_PER_ADDRESS": 2, "CLIENT_ADDRESS_HEADER": "X-Forwarded-For"}
    proxy, first, second = random_address(), random_address(), random_address()
    # What a client sent itself comes first; the proxy appends the address it saw.
    behind = [(b"x-forwarded-for", f"198.51.100.1, {first}".encode())]
    opened = [(await open_socket(store_id, proxy, behind))[0] for _ in range(2)]
    assert all(opened)
    assert (await open_socket(store_id, proxy, behind))[1][0] == 429
    # Another client behind the same proxy has places of its own.
    other, _ = await open_socket(store_id, proxy, [(b"x-forwarded-for", second.encode())])
    assert other is not None
    for communicator in [*opened, other]:
        await close_socket(communicator)


async def test_one_user_cannot_open_more_connections_than_the_client_cap(settings, client, store_id):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "syncapp.access.user_access", "MAX_CONNECTIONS_PER_CLIENT": 2}
    user = await new_user(is_superuser=True)
    cookie = await session_cookie(client, user)
    first = Client(f"{store_id}-1", headers=[cookie], app=app_03())
    second = RpcClient(f"{store_id}-2", app=app_04())
    second.communicator.scope["headers"] = [cookie]
    assert (await first.connect())[0] and (await second.connect())[0]
    third = Client(f"{store_id}-3", headers=[cookie], app=app_03())
    assert not (await third.connect())[0]
    # From another address too: it is the user who is counted.
    fourth = Client(f"{store_id}-4", headers=[cookie], app=app_03())
    fourth.communicator.scope["client"] = (random_address(), 1)
    assert not (await fourth.connect())[0]
    await first.close()
    fifth = Client(f"{store_id}-5", headers=[cookie], app=app_03())
    assert (await fifth.connect())[0]
    await second.close()
    await fifth.close()


# Two daphne processes on PostgreSQL + Redis.


@pytest.fixture
def two_nodes(tmp_path):
    """Two daphne processes on one PostgreSQL database and Redis, with a per-client rate and an address cap."""
    from tests.support.cluster import Node
    from tests.support.daphne import REPO_ROOT
    from tests.support.databases import postgres_database
    from tests.support.services import require_postgres, require_redis

    require_postgres()
    require_redis()
    (tmp_path / "limits_settings.py").write_text(
        "from livesync_project.settings import *  # noqa: F403\n"
        "from livesync_project.settings import LIVESYNC\n"
        f"LIVESYNC = {{**LIVESYNC, 'MAX_PUSHES_PER_SECOND_PER_CLIENT': {RATE}, 'MAX_CONNECTIONS_PER_ADDRESS': 3}}\n"
    )
    environment = {
        "DJANGO_SETTINGS_MODULE": "limits_settings",
        "PYTHONPATH": f"{tmp_path}:{REPO_ROOT}",
        "LIVESYNC_VALIDATE_PAYLOAD": "syncapp.tokens.validate_token",
    }
    with postgres_database() as database_url:
        nodes = [Node(f"p{n}", tmp_path, database_url, settings=environment) for n in range(2)]
        try:
            for node in nodes:
                node.server.start()
            yield nodes
        finally:
            for node in nodes:
                node.shutdown()


def token_for(stores, subject):
    """A token the daphne processes accept: signed with the key they run with (the example project's)."""
    from tests.support.daphne import REPO_ROOT, server_environment

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; django.setup(); from syncapp import tokens; "
            f"print(tokens.issue({stores!r}, subject={subject!r}))",
        ],
        cwd=REPO_ROOT,
        env=server_environment({"DJANGO_SETTINGS_MODULE": "livesync_project.settings"}),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


async def test_limits_hold_across_two_processes_through_redis(two_nodes):
    import websockets
    from websockets.exceptions import InvalidStatus

    from tests.support.v03_client import connection_path

    run = uuid.uuid4().hex[:8]
    token = await asyncio.to_thread(token_for, f"limits-{run}-*", f"subject-{run}")

    def url(node, name):
        return f"{node.server.url}{connection_path(f'limits-{run}-{name}', {'authToken': token})}"

    acked = 0
    started = time.monotonic()
    until = started + CROSS_PROCESS_FLOOD_SECONDS

    async def push_on(node, name):
        nonlocal acked
        async with websockets.connect(url(node, name), proxy=None, compression=None) as ws:
            seq = 1
            while time.monotonic() < until:
                push = {"_tag": "WSMessage.PushReq", "requestId": str(seq), "batch": events(seq, seq)}
                await ws.send(json.dumps(push))
                while True:
                    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    # Skipping the PullRes of its own events (their requestId is an object).
                    if answer.get("requestId") == str(seq):
                        break
                if answer["_tag"] == "WSMessage.PushAck":
                    acked += 1
                    seq += 1
                else:
                    assert answer["message"] == f"Push refused: more than {RATE} pushes per second for {WHOSE}"

    # One socket of the subject on each process, pushing as fast as it is answered.
    first, second = two_nodes
    await asyncio.gather(push_on(first, "a"), push_on(second, "b"))
    seconds = time.monotonic() - started
    # Both processes together, not each: each process counting alone lets about twice as many through. Processes
    # that start at the same instant may each let RATE through before they hear of each other.
    assert RATE <= acked <= RATE * (seconds + 1) + RATE, (acked, seconds)
    await asyncio.sleep(0.5)

    # The address cap counts the sockets of both processes.
    open_sockets = [
        await websockets.connect(url(node, f"cap-{n}"), proxy=None, compression=None)
        for n, node in enumerate((first, first, second))
    ]
    for node in (first, second):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(url(node, "cap-x"), proxy=None, compression=None)
        assert refused.value.response.status_code == 403
    await open_sockets[0].close()
    await asyncio.sleep(0.5)
    replacement = await websockets.connect(url(second, "cap-y"), proxy=None, compression=None)
    for ws in [*open_sockets[1:], replacement]:
        await ws.close()
    log = first.log() + second.log()
    assert "Too many connections: 3 already open from this address" in log
