"""The package without its extras (issue 35): one process on the in-memory layer and SQLite needs neither
channels_redis (``[redis]``) nor prometheus-client (``[metrics]``), and a setting that needs one fails
``manage.py check`` naming it (syncapp.E012).

In-process: the checks and ``/metrics`` as they behave without an extra, and every module of syncapp imported
with both extras hidden. For real: the wheel installed without extras into a fresh virtualenv, where a tiny
project passes ``check``, fails it with a Redis layer or a metrics token, and pushes and pulls over a WebSocket.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from channels.layers import InMemoryChannelLayer
from django.core import checks
from django.test import Client

from syncapp import metrics
from syncapp.fanout import layer_redis, publisher
from tests.support.daphne import REPO_ROOT

REDIS_INSTALL = 'pip install "django-livestore-sync[redis]"'
METRICS_INSTALL = 'pip install "django-livestore-sync[metrics]"'
TOKEN = "a-metrics-token-of-some-length"
PUBSUB = {"BACKEND": layer_redis.PUBSUB_LAYER, "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0"}]}}
EXTRAS = ("channels_redis", "redis", "prometheus_client")


def extra_errors(settings, livesync=None, layer=None):
    settings.DEBUG = True
    settings.LIVESYNC = livesync or {}
    if layer is not None:
        settings.CHANNEL_LAYERS = {"default": layer}
    return [message for message in checks.run_checks() if message.id == "syncapp.E012"]


@pytest.fixture
def without_channels_redis(monkeypatch):
    monkeypatch.setattr(layer_redis, "_layer_classes", lambda: ())


@pytest.fixture
def without_prometheus_client(monkeypatch):
    monkeypatch.setattr(metrics, "Counter", None)


def test_with_the_extras_installed_a_redis_layer_and_a_metrics_token_pass(settings):
    assert layer_redis.installed() and metrics.installed()
    assert extra_errors(settings, {"METRICS_TOKEN": TOKEN}, PUBSUB) == []


def test_a_redis_layer_without_channels_redis_is_an_error_naming_the_extra(settings, without_channels_redis):
    assert extra_errors(settings, layer={"BACKEND": "channels.layers.InMemoryChannelLayer"}) == []
    [error] = extra_errors(settings, layer=PUBSUB)
    assert REDIS_INSTALL in error.msg and layer_redis.PUBSUB_LAYER in error.msg
    # Not W003 as well on Python 3.11: that check needs channels_redis to read the hosts.
    assert [m.id for m in checks.run_checks() if m.id.startswith("syncapp")] == ["syncapp.E012"]
    [error] = extra_errors(settings, layer={"BACKEND": layer_redis.CORE_LAYER})
    assert REDIS_INSTALL in error.msg


def test_metrics_turned_on_without_prometheus_client_is_an_error_naming_the_extra(settings, without_prometheus_client):
    assert extra_errors(settings) == []
    for livesync in ({"METRICS_TOKEN": TOKEN}, {"METRICS_ALLOWED_ADDRESSES": ["127.0.0.1"]}):
        [error] = extra_errors(settings, livesync)
        assert METRICS_INSTALL in error.msg and next(iter(livesync)) in error.msg


def test_without_prometheus_client_metrics_answers_404_and_families_count_nothing(settings, without_prometheus_client):
    settings.LIVESYNC = {"METRICS_TOKEN": TOKEN}
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404 and METRICS_INSTALL.encode() in response.content
    family = metrics._family(metrics.Counter, "livesync_never_registered", "Made without prometheus-client.")
    assert isinstance(family, metrics._Off)
    family.labels("a", "b").inc()
    family.labels("a").dec()
    family.set(3)
    family.observe(0.5)


def test_only_channels_redis_pubsub_layer_gets_the_pipelined_publisher(without_channels_redis):
    layer = InMemoryChannelLayer()
    assert not layer_redis.is_redis_layer(layer) and not layer_redis.is_pubsub_layer(layer)
    assert isinstance(publisher.for_layer(layer), publisher.LayerPublisher)


def test_channels_redis_layers_are_recognised_when_installed():
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    pubsub, core = RedisPubSubChannelLayer(hosts=["redis://127.0.0.1:6379/0"]), RedisChannelLayer()
    assert layer_redis.is_pubsub_layer(pubsub) and layer_redis.is_redis_layer(pubsub)
    assert layer_redis.is_redis_layer(core) and not layer_redis.is_pubsub_layer(core)
    assert isinstance(publisher.for_layer(pubsub), publisher.PipelinedPublisher)
    assert isinstance(publisher.for_layer(core), publisher.LayerPublisher)


HIDDEN_EXTRAS_PROBE = """
import importlib, json, pkgutil, sys

for name in {extras!r}:
    sys.modules[name] = None  # import raises ImportError, as when the package is missing
import django

django.setup()
import syncapp
from django.core import checks
from django.test.utils import override_settings

failed = {{}}
for info in pkgutil.walk_packages(syncapp.__path__, "syncapp."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = repr(exc)
with override_settings(LIVESYNC={{"METRICS_TOKEN": {token!r}}}):
    metrics_check = [m.msg for m in checks.run_checks() if m.id.startswith("syncapp")]
with override_settings(CHANNEL_LAYERS={{"default": {pubsub!r}}}):
    redis_check = [m.msg for m in checks.run_checks() if m.id.startswith("syncapp")]
print(json.dumps({{
    "failed": failed,
    "plain_check": [m.id for m in checks.run_checks() if m.id.startswith("syncapp")],
    "metrics_check": metrics_check,
    "redis_check": redis_check,
    "loaded": sorted(n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in {extras!r}),
}}))
"""


def test_every_module_imports_and_checks_run_with_both_extras_hidden():
    """The cheap stand-in for the virtualenv test below, in this environment (which has the extras)."""
    probe = HIDDEN_EXTRAS_PROBE.format(extras=EXTRAS, token=TOKEN, pubsub=PUBSUB)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.pop("LIVESYNC_TEST_BACKEND", None)
    ran = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result["failed"] == {} and result["loaded"] == []
    assert result["plain_check"] == []
    assert len(result["metrics_check"]) == 1 and METRICS_INSTALL in result["metrics_check"][0]
    assert len(result["redis_check"]) == 1 and REDIS_INSTALL in result["redis_check"][0]


# A project of one process on the in-memory layer and SQLite; BARE_LAYER=redis and BARE_METRICS_TOKEN turn on
# what needs an extra.
BARE_SETTINGS = """
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "bare-install"
DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "channels",
    "syncapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "bare_urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
    }
}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
if os.environ.get("BARE_LAYER") == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
        }
    }
LIVESYNC = {"METRICS_TOKEN": os.environ.get("BARE_METRICS_TOKEN")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""

BARE_URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("admin/", admin.site.urls), path("", include("syncapp.urls"))]
"""

BARE_MANAGE = """
import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bare_settings")
execute_from_command_line(sys.argv)
"""

# Push on one socket, pull on another, /healthz and /metrics: printed as JSON for the test to judge.
BARE_ROUND_TRIP = """
import asyncio
import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bare_settings")
django.setup()
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import Client

import syncapp
from syncapp.routing import websocket_urlpatterns

call_command("migrate", verbosity=0)
EVENT = {
    "name": "v1.TodoCreated",
    "args": {"id": "todo-1", "text": "bare"},
    "seqNum": 1,
    "parentSeqNum": 0,
    "clientId": "client",
    "sessionId": "session",
}


async def socket(app):
    communicator = WebsocketCommunicator(app, "/websocket?storeId=bare-store")
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def recv(communicator):
    return json.loads(await communicator.receive_from(timeout=10))


async def round_trip():
    app = URLRouter(websocket_urlpatterns)
    pusher, puller = await socket(app), await socket(app)
    await pusher.send_to(text_data=json.dumps({"_tag": "WSMessage.PushReq", "requestId": "p1", "batch": [EVENT]}))
    ack, broadcast = await recv(pusher), await recv(pusher)
    await puller.send_to(text_data=json.dumps({"_tag": "WSMessage.PullReq", "requestId": "q1"}))
    pulled = await recv(puller)
    for communicator in (pusher, puller):
        await communicator.disconnect()
    return ack, broadcast, pulled


ack, broadcast, pulled = asyncio.run(round_trip())
healthz = Client().get("/healthz")
scrape = Client().get("/metrics", headers={"Authorization": "Bearer " + os.environ.get("BARE_METRICS_TOKEN", "")})
print(json.dumps({
    "syncapp": syncapp.__file__,
    "ack": ack,
    "broadcast": [item["eventEncoded"] for item in broadcast["batch"]],
    "pulled": [item["eventEncoded"] for item in pulled["batch"]],
    "remaining": pulled["remaining"],
    "healthz": [healthz.status_code, healthz.json()],
    "metrics": [scrape.status_code, scrape.content.decode()],
    "loaded": sorted(n for n in sys.modules if n.split(".")[0] in ("channels_redis", "redis", "prometheus_client")),
}))
"""


@pytest.fixture(scope="module")
def bare_install(distributions, tmp_path_factory):
    """``(python, project directory)``: the wheel installed without extras in a fresh virtualenv, beside a tiny
    project. The wheel is the session's (tests/test_distribution.py builds the same one)."""
    from tests.support.distribution import fresh_virtualenv

    wheel, _ = distributions
    root = tmp_path_factory.mktemp("bare")
    bin_dir = fresh_virtualenv(root / "venv", wheel)
    project = root / "project"
    project.mkdir()
    for name, text in (
        ("bare_settings.py", BARE_SETTINGS),
        ("bare_urls.py", BARE_URLS),
        ("manage.py", BARE_MANAGE),
        ("round_trip.py", BARE_ROUND_TRIP),
    ):
        (project / name).write_text(textwrap.dedent(text).lstrip())
    return bin_dir / "python", project


def run_bare(bare_install, *args, **env):
    python, project = bare_install
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
    clean = {k: v for k, v in clean.items() if not k.startswith(("LIVESYNC_", "BARE_"))}
    return subprocess.run(
        [str(python), *args],
        check=False,
        cwd=project,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=300,
    )


def test_the_bare_install_has_neither_extra(bare_install):
    for module in EXTRAS:
        assert run_bare(bare_install, "-c", f"import {module}").returncode != 0, f"{module} was installed"
    imported = run_bare(bare_install, "-c", "import syncapp, syncapp.metrics, syncapp.fanout.layer_redis; print('ok')")
    assert imported.returncode == 0 and imported.stdout.strip() == "ok", imported.stderr


def test_check_passes_bare_and_names_the_extra_a_setting_needs(bare_install):
    plain = run_bare(bare_install, "manage.py", "check")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    redis = run_bare(bare_install, "manage.py", "check", BARE_LAYER="redis")
    assert redis.returncode != 0 and "syncapp.E012" in redis.stderr and REDIS_INSTALL in redis.stderr
    token = run_bare(bare_install, "manage.py", "check", BARE_METRICS_TOKEN=TOKEN)
    assert token.returncode != 0 and "syncapp.E012" in token.stderr and METRICS_INSTALL in token.stderr


def test_a_websocket_push_and_pull_round_trip_in_the_bare_install(bare_install):
    ran = run_bare(bare_install, "round_trip.py", BARE_METRICS_TOKEN=TOKEN)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    assert "site-packages" in result["syncapp"]
    assert result["ack"] == {"_tag": "WSMessage.PushAck", "requestId": "p1"}
    assert result["broadcast"] == result["pulled"] and [e["seqNum"] for e in result["pulled"]] == [1]
    assert result["remaining"] == 0
    assert result["healthz"] == [200, {"database": "ok", "channel_layer": "ok"}]
    status, text = result["metrics"]
    assert status == 404 and METRICS_INSTALL in text
    assert result["loaded"] == []
