"""The admin's connected-sockets column across processes on Redis, and after one process is SIGKILLed.

Each process records its sockets per store in Redis under a key that expires
(``syncapp.fanout.presence``). The admin page of one process shows the sockets of
both; once the other is killed, its sockets stop counting within the key's
time to live (``presence.ttl()``, 5 s with the default head-check interval).
"""

import asyncio
import http.cookiejar
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from syncapp.fanout import presence
from tests.support.daphne import REPO_ROOT, server_environment
from tests.support.v03_socket import close_all, make_batch, open_sockets

pytestmark = pytest.mark.faults

PASSWORD = "presence-test-password"
# The key's time to live with HEAD_CHECK_INTERVAL = 1 s, plus a head check's worth of slack.
DROP_BOUND = 5 + 1.5


class AdminPage:
    """A logged-in admin session on one server, reading the store list as a browser would."""

    def __init__(self, base_url, username):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        login = f"{base_url}/admin/login/"
        form = self.opener.open(login, timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD, "next": "/admin/"}
        ).encode()
        self.opener.open(urllib.request.Request(login, data=data, headers={"Referer": login}), timeout=10).read()

    def sockets(self, store_id):
        """The connected-sockets cell of the store's row ("-" when unknown)."""
        query = urllib.parse.urlencode({"q": store_id})
        html = self.opener.open(f"{self.base_url}/admin/syncapp/store/?{query}", timeout=10).read().decode()
        cell = re.search(r'<td class="field-sockets">([^<]*)</td>', html)
        assert cell is not None, "the store list has no row for the store"
        return cell.group(1)


async def wait_for(read, expected, timeout):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(read) == expected:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"still {await asyncio.to_thread(read)!r}, not {expected!r}, after {timeout} s")


async def test_the_admin_counts_every_process_and_forgets_a_killed_one(nodes, store_id, fault_database, observe):
    assert presence.ttl() + 1.5 <= DROP_BOUND
    a, b = nodes(2)
    username = f"admin-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            f"--username={username}",
            "--email=admin@example.com",
        ],
        cwd=REPO_ROOT,
        env=server_environment({"DATABASE_URL": fault_database, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}),
        check=True,
        capture_output=True,
        timeout=120,
    )
    sockets = await open_sockets(
        [("a-1", a.url(store_id)), ("a-2", a.url(store_id)), ("b-1", b.url(store_id)), ("b-2", b.url(store_id))]
    )
    # A 0.3 pull does not create a store (as on the reference): the first push does.
    assert (await sockets[0].push(make_batch("a-1", 0, 1, 0))).acked
    admin = await asyncio.to_thread(AdminPage, a.server.http_url, username)
    observe("seconds until both processes counted", await wait_for(lambda: admin.sockets(store_id), "4", 5))

    b.server.kill()
    dropped_after = await wait_for(lambda: admin.sockets(store_id), "2", DROP_BOUND + 2)
    observe("seconds after SIGKILL until its sockets stopped counting", dropped_after)
    assert dropped_after <= DROP_BOUND
    await close_all(sockets)
