"""The tutorial (``docs/tutorial.md``), applied to a fresh ``django-admin startproject`` that installed the wheel.

The code blocks are read from the tutorial itself (each marked ``<!-- embed: append|write PATH -->``), so a
docs change that would break users breaks this test. The project then serves real LiveStore clients of both
generations under ``/sync``, keeps its own URLs, guards every sync route with its one validator, and lets a
signed-in Django user sync the stores the admin gives them.
"""

import contextlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import django
import pytest
import websockets

from tests.interop.conftest import AUTH_TOKEN, INTEROP_DIR, V04_DIR, ScenarioRunner, require_node_project
from tests.interop.expectations import run_mixed_generations
from tests.support.daphne import REPO_ROOT, free_port, server_environment
from tests.support.distribution import fresh_virtualenv

pytestmark = pytest.mark.interop

EMBED_BLOCK = re.compile(r"<!-- embed: (append|write) (\S+) -->\n```python\n(.*?)```", re.S)


TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"


def readme_blocks():
    """The tutorial's ``(mode, path, code)`` blocks, in the order a reader applies them."""
    blocks = EMBED_BLOCK.findall(TUTORIAL.read_text())
    assert {path for _, path, _ in blocks} >= {"mysite/settings.py", "mysite/asgi.py", "mysite/urls.py"}
    return blocks


@dataclass
class EmbeddedSite:
    """The host project's daphne process; ``url`` is what its clients are given (the /sync mount)."""

    port: int
    log_path: object
    process: object
    # Runs ``manage.py COMMAND…`` in the site's project, with its daphne's environment; returns the finished process.
    manage: Callable[..., subprocess.CompletedProcess] | None = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/sync"

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines=60):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_until_ready(site, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if site.process.poll() is not None:
            raise RuntimeError(f"the embedded site's daphne exited:\n{site.log_tail()}")
        try:
            with urllib.request.urlopen(f"{site.http_url}/sync/", timeout=1):
                return
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"the embedded site did not answer:\n{site.log_tail()}")


@contextlib.contextmanager
def tutorial_site(directory, distributions, server_command, log_name):
    """The tutorial's project, built in ``directory`` from the wheel and its marked blocks, checked
    (``check --fail-level WARNING``) and migrated, then served by ``server_command(python, port)`` until the
    block ends."""
    require_node_project(INTEROP_DIR)
    require_node_project(V04_DIR)
    wheel, _ = distributions
    # The Django this run tests with (the version matrix runs this test on the oldest and the newest).
    bin_dir = fresh_virtualenv(directory / "venv", wheel, f"Django=={django.get_version()}")
    project = directory / "site"
    project.mkdir()
    subprocess.run([str(bin_dir / "django-admin"), "startproject", "mysite", str(project)], check=True)
    for mode, path, code in readme_blocks():
        target = project / path
        target.write_text(code if mode == "write" else target.read_text() + "\n" + code)
    environment = server_environment({"SYNC_AUTH_TOKEN": AUTH_TOKEN})
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    environment.pop("PYTHONPATH", None)
    python = str(bin_dir / "python")

    def manage(*command):
        return subprocess.run(
            [python, "manage.py", *command], cwd=project, env=environment, capture_output=True, text=True
        )

    for command in (["check", "--fail-level", "WARNING"], ["migrate", "--noinput"]):
        done = manage(*command)
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    log_path = directory / log_name
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            server_command(python, port), cwd=project, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    embedded = EmbeddedSite(port, log_path, process, manage)
    try:
        _wait_until_ready(embedded)
        yield embedded
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def site(tmp_path_factory, distributions):
    def daphne(python, port):
        return [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application"]

    with tutorial_site(tmp_path_factory.mktemp("embedded-site"), distributions, daphne, "daphne.log") as embedded:
        yield embedded


def test_real_clients_of_both_generations_converge_through_the_embedded_site(site, request, tmp_path):
    """Two 0.3.1 ``makeCfSync`` clients and a 0.4.0 ``makeWsSync`` and ``makeHttpSync`` client on one store."""
    old_runner = ScenarioRunner(request.node, tmp_path, INTEROP_DIR)
    new_runner = ScenarioRunner(request.node, tmp_path, V04_DIR)
    run_mixed_generations(old_runner, new_runner, site, old_runner.new_store_id("embedded"))


def _status(url, method="GET", data=None):
    request = urllib.request.Request(url, method=method, data=data)
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_admin_is_styled_and_the_hosts_urls_keep_djangos_behaviour(site):
    assert _status(f"{site.http_url}/static/admin/css/base.css")[0] == 200
    assert _status(f"{site.http_url}/no/such/page/")[0] == 404
    status, headers, _ = _status(f"{site.http_url}/admin")
    assert status == 301 and headers["Location"] == "/admin/"
    # Django's own view (its CSRF check) answers, not the sync endpoint's JSON.
    status, headers, _ = _status(f"{site.http_url}/admin/login/?transport=http&storeId=hijack", "POST", b"[]")
    assert status == 403 and headers["Content-Type"].startswith("text/html")
    assert _status(f"{site.http_url}/sync/healthz")[0] == 200


async def test_every_sync_route_calls_the_projects_validator(site):
    payload = json.dumps({"authToken": "wrong"})
    query = f"storeId=guarded&payload={urllib.request.quote(urllib.request.quote(payload, safe=''), safe='')}"
    for url in (f"{site.url}/websocket?{query}", f"{site.url}?{query}&transport=ws"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, proxy=None):
                pass
        assert refused.value.response.status_code == 403, url
    ping = {"_tag": "Request", "id": "1", "tag": "SyncHttpRpc.Ping", "payload": {"storeId": "guarded"}, "headers": []}
    status, _, body = _status(f"{site.http_url}/sync?{query}&transport=http", "POST", json.dumps(ping).encode())
    assert status == 400 and b"invalid auth token" in body
    log = site.log_path.read_text(errors="replace")
    assert log.count("refused a 0.3 websocket request for store 'guarded'") == 1
    assert log.count("refused a 0.4 websocket request for store 'guarded'") == 1
    assert log.count("refused a 0.4 http request for store 'guarded'") == 1


# What the tutorial's step 7 does in the admin: a user, a Store access row for her stores, and her login (the
# session cookie a browser would hold). Prints the session key.
SIGNED_IN_USER = """
from django.contrib.auth.models import User
from django.test import Client
from syncapp.models import StoreAccess

alice = User.objects.create_user("alice")
StoreAccess.objects.create(user=alice, pattern="alice/*", access=StoreAccess.WRITE)
browser = Client()
browser.force_login(alice)
print(browser.cookies["sessionid"].value)
"""


async def test_a_signed_in_user_syncs_the_stores_the_admin_gives_her_in_two_windows(site):
    from tests.support.v03_client import event

    done = site.manage("shell", "-c", SIGNED_IN_USER)
    assert done.returncode == 0, done.stdout + done.stderr
    # No syncPayload: the browser's session cookie, and its page's own Origin, are all it sends.
    headers = {"Cookie": f"sessionid={done.stdout.split()[-1]}", "Origin": site.http_url}
    windows = [
        websockets.connect(f"{site.url}/websocket?storeId=alice%2Ftodos", additional_headers=headers, proxy=None)
        for _ in range(2)
    ]
    async with windows[0] as first, windows[1] as second:
        await first.send(json.dumps({"_tag": "WSMessage.PullReq", "requestId": "pull"}))
        assert json.loads(await first.recv())["remaining"] == 0
        todo = event(1, args={"id": "t1", "text": "Buy milk"})
        await second.send(json.dumps({"_tag": "WSMessage.PushReq", "requestId": "push", "batch": [todo]}))
        assert json.loads(await second.recv())["_tag"] == "WSMessage.PushAck"
        live = json.loads(await first.recv())
        assert [item["eventEncoded"]["args"] for item in live["batch"]] == [{"id": "t1", "text": "Buy milk"}]
    with pytest.raises(websockets.InvalidStatus) as refused:
        url = f"{site.url}/websocket?storeId=bob%2Ftodos"
        async with websockets.connect(url, additional_headers=headers, proxy=None):
            pass
    assert refused.value.response.status_code == 403
    assert "alice may not sync store 'bob/todos'" in site.log_path.read_text(errors="replace")


def test_the_tutorials_clients_are_given_the_urls_its_clients_here_use():
    """The URLs the tutorial gives LiveStore apps (port 8000) are the mount these tests' clients sync through."""
    given = re.findall(r"make(?:Cf|Ws|Http)Sync\(\{ url: '([^']+)' \}\)", TUTORIAL.read_text())
    site = EmbeddedSite(8000, None, None)
    assert len(given) == 3 and set(given) == {site.url, f"{site.http_url}/sync"}, given
