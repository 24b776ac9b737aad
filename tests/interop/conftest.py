"""Real daphne servers and the runner for the Node scenarios (``scenario.mjs``) that drive LiveStore clients.

Servers are module-scoped (each scenario uses its own storeId, so they share a server safely); when a test
fails, the scenario's stderr and the tail of every server log it used are attached to the report.
"""

import json
import os
import shutil
import subprocess
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.services import REDIS_URL, require_redis
from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database, sqlite_database

INTEROP_DIR = Path(__file__).resolve().parent
AUTH_TOKEN = "insecure-token-change-me"
WRONG_TOKEN = "wrong"
SCENARIO_TIMEOUT_S = 90


def node_setup_problem():
    """Why the Node scenarios cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        return f"the pinned LiveStore 0.3.1 clients need Node 20 or newer, found {version}"
    if not (INTEROP_DIR / "node_modules").is_dir():
        return "tests/interop/node_modules is missing (run `npm ci` in tests/interop)"
    return None


@pytest.fixture(scope="module", autouse=True)
def node_scenarios_available():
    """Skips the interop tests where the Node side is not installed; CI must run them, so there it fails."""
    problem = node_setup_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"interop tests cannot run under CI: {problem}", pytrace=False)
    pytest.skip(f"interop tests skipped: {problem}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for title, text in getattr(item, "interop_logs", {}).items():
            report.sections.append((title, text))


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    """The embedded default deployment: a SQLite file and the in-memory channel layer (no REDIS_URL)."""
    directory = tmp_path_factory.mktemp("embedded")
    settings = {"DATABASE_URL": sqlite_database(directory)}
    with DaphneServer(directory / "daphne.log", settings) as server:
        yield server


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The embedded default with the example payload validator on."""
    directory = tmp_path_factory.mktemp("auth")
    settings = {"DATABASE_URL": sqlite_database(directory), "LIVESYNC_AUTH_TOKEN": AUTH_TOKEN}
    with DaphneServer(directory / "daphne.log", settings) as server:
        yield server


@pytest.fixture(scope="module")
def postgres_redis_servers(tmp_path_factory):
    """Two daphne processes on different ports sharing one fresh PostgreSQL database and Redis."""
    require_redis()
    directory = tmp_path_factory.mktemp("postgres-redis")
    with postgres_database() as database_url, ExitStack() as running:
        settings = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}
        yield [running.enter_context(DaphneServer(directory / f"daphne-{n}.log", settings)) for n in (1, 2)]


@pytest.fixture
def run_scenario(request, tmp_path):
    """Runs ``scenario.mjs <name>`` against ``servers`` on a fresh storeId and returns its ``result`` object."""

    def run(name, *servers):
        store_id = f"{name}-{uuid.uuid4().hex[:12]}"
        stderr_path = tmp_path / f"{name}.stderr"
        command = ["node", "scenario.mjs", name, "--store-id", store_id, "--token", AUTH_TOKEN]
        command += ["--wrong-token", WRONG_TOKEN, "--timeout-ms", str(SCENARIO_TIMEOUT_S * 1000)]
        for server in servers:
            command += ["--url", server.url]
        try:
            with stderr_path.open("wb") as stderr:
                completed = subprocess.run(
                    command,
                    cwd=INTEROP_DIR,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    timeout=SCENARIO_TIMEOUT_S + 30,
                )
        finally:
            request.node.interop_logs = {
                f"scenario {name} stderr (tail)": tail(stderr_path),
                **{f"daphne :{server.port} log (tail)": server.log_tail() for server in servers},
            }
        lines = completed.stdout.splitlines()
        assert len(lines) == 1, f"scenario {name} must print one JSON line, got {completed.stdout!r}"
        output = json.loads(lines[0])
        assert "error" not in output, f"scenario {name} failed: {output['error']}"
        assert completed.returncode == 0
        return output["result"]

    return run


def tail(path, lines=80):
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
