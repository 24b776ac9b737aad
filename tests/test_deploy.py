"""The deployment files, as far as this machine can run them: it has no Docker engine.

The replicas' health check runs for real against daphne with a production ``DJANGO_ALLOWED_HOSTS``; the
image and compose files are checked for what the README promises of them.
"""

import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.support.daphne import REPO_ROOT
from tests.support.databases import sqlite_daphne

PRODUCTION_HOST = "sync.example.com"


@pytest.fixture(scope="module")
def production_server(tmp_path_factory):
    settings = {
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": PRODUCTION_HOST,
        "DJANGO_SECRET_KEY": "a-production-like-secret-key-for-the-health-check-test",
    }
    with sqlite_daphne(tmp_path_factory.mktemp("deploy"), settings, ready_host=PRODUCTION_HOST) as server:
        yield server


def test_the_compose_health_check_passes_with_a_real_allowed_hosts(production_server):
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    (command,) = re.findall(r'test: \["CMD", "python", "(deploy/healthcheck\.py)"\]', compose)
    environment = {"DJANGO_ALLOWED_HOSTS": PRODUCTION_HOST, "LIVESYNC_PORT": str(production_server.port)}
    checked = subprocess.run([sys.executable, command], cwd=REPO_ROOT, env=environment, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    # Why the Host header: the same request without it is refused by Django.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{production_server.http_url}/healthz")
    assert refused.value.code == 400


def test_the_health_check_fails_when_nothing_answers(production_server):
    environment = {"DJANGO_ALLOWED_HOSTS": PRODUCTION_HOST, "LIVESYNC_PORT": "1"}
    checked = subprocess.run([sys.executable, "deploy/healthcheck.py"], cwd=REPO_ROOT, env=environment)
    assert checked.returncode == 1


def test_the_image_installs_the_package_and_runs_unprivileged():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir ".[all]"' in dockerfile
    assert "requirements.txt" not in dockerfile, "the image must not get the test packages"
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "COPY --from=demo /demo/dist examples/todomvc/dist" in dockerfile


def test_the_build_context_leaves_out_local_environments():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".venv", "**/node_modules", ".git", "tests", "db.sqlite3*"} <= ignored


def test_every_long_running_service_restarts_on_failure():
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    services = re.split(r"\n  (?=\w[\w-]*:\n)", compose.split("\nservices:\n", 1)[1].split("\nvolumes:", 1)[0])
    for service in services:
        name = service.split(":", 1)[0].strip()
        if name != "migrate":
            assert "restart: on-failure" in service, name
