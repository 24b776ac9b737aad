"""Issue 36, part 7: access taken away reaches open sockets, not only new ones.

Each trigger in process (a deleted or narrowed ``StoreAccess`` row, a deactivated user, a changed password, a
logout, an expired token, a change no signal announces), and a row deleted by another process, reaching sockets
on either of two daphne processes on PostgreSQL + Redis. A socket whose access is gone is closed with 4403; its
client reconnects and is refused at the handshake.
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
from django.db import OperationalError
from django.test import Client as DjangoClient

from syncapp import tokens
from syncapp.context import READ_ONLY_MESSAGE
from syncapp.models import StoreAccess
from syncapp.routing import TransportRouter, websocket_urlpatterns
from syncapp.server.websocket import CLOSE_ACCESS_REVOKED
from tests.support.v03_client import Client, events
from tests.support.v04_client import RpcClient

pytestmark = [pytest.mark.security, pytest.mark.django_db(transaction=True)]

# A notice reaches the sockets of this process at once: they must not wait for their timer.
NOTICE_SECONDS = 3.0
ACCESS = {"VALIDATE_PAYLOAD": "syncapp.access.user_access", "REVALIDATE_INTERVAL": 60}


def app_03():
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def app_04():
    return TransportRouter(None)


async def new_user(**fields):
    return await User.objects.acreate(id=random.randint(10**6, 10**9), username=f"u{uuid.uuid4().hex[:10]}", **fields)


async def logged_in(user, django_client=None):
    """A Django test client logged in as ``user`` and the cookie header of its session."""
    django_client = django_client or DjangoClient()
    await sync_to_async(django_client.force_login)(user)
    return django_client, (b"cookie", f"sessionid={django_client.cookies['sessionid'].value}".encode())


async def open_socket(generation, store_id, cookie=None, payload=None):
    if generation == "0.3":
        socket = Client(store_id, payload, headers=[cookie] if cookie else None, app=app_03())
    else:
        socket = RpcClient(store_id, payload, app=app_04())
        if cookie:
            socket.communicator.scope["headers"] = [cookie]
    connected, _ = await socket.connect()
    assert connected
    return socket


async def push_acknowledged(generation, socket, seq):
    await socket.push(f"p{seq}", events(seq, seq))
    answer = await socket.recv()
    if generation == "0.3":
        if answer["_tag"] != "WSMessage.PushAck":
            return answer["message"]
        await socket.recv()
        return True
    if answer["exit"]["_tag"] != "Success":
        return answer["exit"]["cause"]["error"]["cause"]
    return True


async def closed_with(socket, within):
    """The close code the server sends within ``within`` seconds (frames before it are skipped)."""
    deadline = time.monotonic() + within
    while True:
        output = await socket.recv_output(max(0.01, deadline - time.monotonic()))
        if output["type"] == "websocket.close":
            return output.get("code")


async def user_with_row(store_id, access=StoreAccess.WRITE, **fields):
    user = await new_user(**fields)
    row = await StoreAccess.objects.acreate(pattern=store_id, user=user, access=access)
    return user, row


GENERATIONS = pytest.mark.parametrize("generation", ["0.3", "0.4"])


@GENERATIONS
async def test_deleting_the_row_closes_the_users_open_socket(settings, store_id, generation):
    settings.LIVESYNC = ACCESS
    user, row = await user_with_row(store_id)
    _, cookie = await logged_in(user)
    socket = await open_socket(generation, store_id, cookie)
    assert await push_acknowledged(generation, socket, 1) is True
    started = time.monotonic()
    await row.adelete()
    assert await closed_with(socket, NOTICE_SECONDS) == CLOSE_ACCESS_REVOKED
    assert time.monotonic() - started < NOTICE_SECONDS
    # The client reconnects, and is refused.
    again = Client(store_id, headers=[cookie], app=app_03())
    assert not (await again.connect())[0]


@GENERATIONS
async def test_narrowing_the_row_to_read_makes_the_open_socket_read_only(settings, store_id, generation):
    settings.LIVESYNC = ACCESS
    user, row = await user_with_row(store_id)
    _, cookie = await logged_in(user)
    socket = await open_socket(generation, store_id, cookie)
    assert await push_acknowledged(generation, socket, 1) is True
    row.access = StoreAccess.READ
    await row.asave()
    deadline = time.monotonic() + NOTICE_SECONDS
    seq = 2
    while (answer := await push_acknowledged(generation, socket, seq)) is True:
        assert time.monotonic() < deadline, "pushes still acknowledged"
        seq += 1
        await asyncio.sleep(0.05)
    assert answer == READ_ONLY_MESSAGE
    # Still open, and still served: it pulls.
    if generation == "0.3":
        [chunk] = await socket.pull_all("pull")
        assert chunk["_tag"] == "WSMessage.PullRes"
    else:
        _, done = await socket.pull_pages("pull")
        assert done["exit"]["_tag"] == "Success"
    # Widened again, it may write again.
    row.access = StoreAccess.WRITE
    await row.asave()
    deadline = time.monotonic() + NOTICE_SECONDS
    while (answer := await push_acknowledged(generation, socket, seq)) is not True:
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.05)
    await socket.close()


async def test_deactivating_the_user_closes_their_open_sockets(settings, store_id):
    settings.LIVESYNC = ACCESS
    user, _ = await user_with_row(store_id)
    _, cookie = await logged_in(user)
    sockets = [await open_socket(generation, store_id, cookie) for generation in ("0.3", "0.4")]
    user.is_active = False
    await user.asave()
    for socket in sockets:
        assert await closed_with(socket, NOTICE_SECONDS) == CLOSE_ACCESS_REVOKED


async def test_changing_the_password_closes_the_sockets_of_the_users_other_sessions(settings, store_id):
    settings.LIVESYNC = ACCESS
    user, _ = await user_with_row(store_id)
    _, cookie = await logged_in(user)
    socket = await open_socket("0.3", store_id, cookie)
    user.set_password("a new password nobody else knows")
    await user.asave()
    assert await closed_with(socket, NOTICE_SECONDS) == CLOSE_ACCESS_REVOKED


async def test_logging_out_closes_that_sessions_sockets_only(settings, store_id):
    settings.LIVESYNC = ACCESS
    user, _ = await user_with_row(store_id)
    browser, cookie = await logged_in(user)
    _, other_cookie = await logged_in(user)
    socket = await open_socket("0.4", store_id, cookie)
    other = await open_socket("0.3", store_id, other_cookie)
    await sync_to_async(browser.logout)()
    assert await closed_with(socket, NOTICE_SECONDS) == CLOSE_ACCESS_REVOKED
    # The user's other session (another browser) is still logged in.
    assert await push_acknowledged("0.3", other, 1) is True
    await other.close()


@GENERATIONS
async def test_a_token_socket_is_closed_when_its_token_expires(settings, store_id, generation):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": "syncapp.tokens.validate_token", "REVALIDATE_INTERVAL": 60}
    token = tokens.issue(store_id, expires_in=2)
    expires = tokens.claims(token, store_id)["expires"]
    socket = await open_socket(generation, store_id, payload={"authToken": token})
    assert await push_acknowledged(generation, socket, 1) is True
    assert await closed_with(socket, expires - time.time() + NOTICE_SECONDS) == CLOSE_ACCESS_REVOKED
    assert time.time() >= expires


async def test_a_change_no_signal_announces_reaches_the_socket_at_its_next_check(settings, store_id):
    settings.LIVESYNC = {**ACCESS, "REVALIDATE_INTERVAL": 0.5}
    user, row = await user_with_row(store_id)
    _, cookie = await logged_in(user)
    socket = await open_socket("0.3", store_id, cookie)
    # A queryset update sends no signal.
    await StoreAccess.objects.filter(pk=row.pk).aupdate(pattern=f"{store_id}-elsewhere")
    assert await closed_with(socket, 0.5 * 1.2 + NOTICE_SECONDS) == CLOSE_ACCESS_REVOKED


checks = []


def flaky_validator(payload, context):
    """Accepts, then fails as a database that went away would, and never refuses."""
    checks.append(context.store_id)
    if len(checks) > 1:
        raise OperationalError("the database is unavailable")


async def test_a_database_error_during_a_check_keeps_the_socket_open(settings, store_id):
    settings.LIVESYNC = {"VALIDATE_PAYLOAD": f"{__name__}.flaky_validator", "REVALIDATE_INTERVAL": 0.2}
    checks.clear()
    socket = await open_socket("0.3", store_id)
    deadline = time.monotonic() + 0.2 * 1.2 * 3 + NOTICE_SECONDS
    while len(checks) < 4:
        assert time.monotonic() < deadline, "the socket is not checked again"
        await asyncio.sleep(0.1)
    assert await push_acknowledged("0.3", socket, 1) is True
    await socket.close()


# Two daphne processes on PostgreSQL + Redis.

# Run in ``manage.py shell`` on their database: users with a row for the stores under their prefix, and a
# logged-in session each. Prints ``username session_key`` lines.
SETUP = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from syncapp.models import StoreAccess
for name in {names!r}:
    user = User.objects.create_user(name)
    StoreAccess.objects.create(pattern=name + "-*", user=user, access=StoreAccess.WRITE)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print(name, session.session_key)
"""

# Deletes a user's rows as a Django process would (the admin, a view, a shell): its signal sends the notice.
DELETE = """
import syncapp.server.revocation  # connected by syncapp's AppConfig.ready once it imports it
from syncapp.models import StoreAccess
StoreAccess.objects.filter(user__username={name!r}).delete()
"""


def manage_shell(database_url, code):
    from tests.support.daphne import REPO_ROOT, server_environment
    from tests.support.services import REDIS_URL

    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO_ROOT,
        env=server_environment({"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


@pytest.fixture
def two_nodes(tmp_path):
    from tests.support.cluster import Node
    from tests.support.databases import postgres_database
    from tests.support.services import require_postgres, require_redis

    require_postgres()
    require_redis()
    with postgres_database() as database_url:
        nodes = [
            Node(f"p{n}", tmp_path, database_url, settings={"LIVESYNC_VALIDATE_PAYLOAD": "syncapp.access.user_access"})
            for n in range(2)
        ]
        try:
            for node in nodes:
                node.server.start()
            yield database_url, nodes
        finally:
            for node in nodes:
                node.shutdown()


class Pusher:
    """A 0.3 socket of one user pushing every PUSH_EVERY seconds, recording when each push was acknowledged and
    when and how the socket closed."""

    PUSH_EVERY = 0.2

    def __init__(self, url, cookie):
        self.url = url
        self.cookie = cookie
        self.acked_at = []
        self.closed_at = None
        self.close_code = None

    async def run(self):
        import websockets

        async with websockets.connect(
            self.url, additional_headers={"Cookie": self.cookie}, proxy=None, compression=None
        ) as ws:
            seq = 1
            try:
                while True:
                    push = {"_tag": "WSMessage.PushReq", "requestId": str(seq), "batch": events(seq, seq)}
                    await ws.send(json.dumps(push))
                    while True:
                        answer = json.loads(await ws.recv())
                        if answer.get("requestId") == str(seq):
                            break
                    assert answer["_tag"] == "WSMessage.PushAck", answer
                    self.acked_at.append(time.monotonic())
                    seq += 1
                    await asyncio.sleep(self.PUSH_EVERY)
            except websockets.ConnectionClosed as closed:
                self.closed_at = time.monotonic()
                self.close_code = closed.rcvd.code if closed.rcvd else None


async def test_deleting_the_row_stops_the_users_pushes_on_either_process_within_10_s(two_nodes):
    """The row is deleted as the admin or a view deletes it, in a process of its own: every process hears of it."""
    import websockets
    from websockets.exceptions import InvalidStatus

    from tests.support.v03_socket import store_url

    database_url, nodes = two_nodes
    name = f"alice{uuid.uuid4().hex[:6]}"
    output = await asyncio.to_thread(manage_shell, database_url, SETUP.format(names=[name]))
    cookie = "sessionid=" + output.strip().splitlines()[-1].split()[1]
    pushers = {node.name: Pusher(store_url(node.server.url, f"{name}-{node.name}"), cookie) for node in nodes}
    tasks = [asyncio.ensure_future(pusher.run()) for pusher in pushers.values()]
    await asyncio.sleep(1.5)
    assert all(pusher.acked_at for pusher in pushers.values()), "every socket pushes before the deletion"

    # From the moment the shell starts (it deletes once Django is set up): an upper bound.
    deleted_at = time.monotonic()
    await asyncio.to_thread(manage_shell, database_url, DELETE.format(name=name))
    await asyncio.wait(tasks, timeout=12)
    for task in tasks:
        task.cancel()
    for node_name, pusher in pushers.items():
        assert pusher.close_code == CLOSE_ACCESS_REVOKED, (node_name, pusher.close_code)
        stopped = max(pusher.closed_at, pusher.acked_at[-1]) - deleted_at
        assert stopped < 10, (node_name, stopped)

    # Reconnecting is refused at the handshake, on either process.
    for node in nodes:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                store_url(node.server.url, f"{name}-again"), additional_headers={"Cookie": cookie}, proxy=None
            )
        assert refused.value.response.status_code == 403
