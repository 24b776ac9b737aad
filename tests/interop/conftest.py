"""Real daphne servers and the runner for the Node scenarios that drive LiveStore clients.

Two Node projects hold the scenarios: this directory (LiveStore 0.3.1, ``scenario.mjs``) and ``v04/`` (LiveStore
0.4.0, ``v04/scenario.mjs``). Servers are module-scoped (each scenario uses its own storeId, so they share a server
safely); when a test fails, each scenario's stderr and the tail of every server log it used are attached to the
report.
"""

import json
import os
import shutil
import subprocess
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database, sqlite_database
from tests.support.services import REDIS_URL, require_redis

INTEROP_DIR = Path(__file__).resolve().parent
V04_DIR = INTEROP_DIR / "v04"
AUTH_TOKEN = "insecure-token-change-me"
WRONG_TOKEN = "wrong"
ADMIN_SECRET = "interop-admin-secret"
SCENARIO_TIMEOUT_S = 90


def node_setup_problem(project_dir):
    """Why the Node scenarios of ``project_dir`` cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    version = subprocess.run(["node", "--version"], check=True, capture_output=True, text=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        return f"the pinned LiveStore clients need Node 20 or newer, found {version}"
    if not (project_dir / "node_modules").is_dir():
        where = project_dir.relative_to(INTEROP_DIR.parents[1])
        return f"{where}/node_modules is missing (run `npm ci` in {where})"
    return None


def require_node_project(project_dir):
    """Skips the calling tests where ``project_dir`` is not installed; CI must run them, so there it fails."""
    problem = node_setup_problem(project_dir)
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"interop tests cannot run under CI: {problem}", pytrace=False)
    pytest.skip(f"interop tests skipped: {problem}")


@pytest.fixture(scope="module", autouse=True)
def node_scenarios_available():
    require_node_project(INTEROP_DIR)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for title, text in getattr(item, "interop_logs", {}).items():
            report.sections.append((title, text))


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    """The embedded default deployment: a SQLite file and the in-memory channel layer (no REDIS_URL).

    Its admin secret is known, so a scenario can reset a store with livesync's admin frame.
    """
    directory = tmp_path_factory.mktemp("embedded")
    settings = {"DATABASE_URL": sqlite_database(directory), "LIVESYNC_ADMIN_SECRET": ADMIN_SECRET}
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


class Scenario:
    """One running ``scenario.mjs`` process; ``result()`` waits for its one JSON line and returns its ``result``."""

    def __init__(self, runner, label, process, stderr_path, servers, timeout_s=SCENARIO_TIMEOUT_S):
        self.runner = runner
        self.timeout_s = timeout_s
        self.label = label
        self.process = process
        self.stderr_path = stderr_path
        self.servers = servers

    def result(self):
        try:
            stdout, _ = self.process.communicate(timeout=self.timeout_s + 30)
        finally:
            self.runner.attach_logs(self)
        lines = stdout.splitlines()
        assert len(lines) == 1, f"scenario {self.label} must print one JSON line, got {stdout!r}"
        output = json.loads(lines[0])
        assert "error" not in output, f"scenario {self.label} failed: {output['error']}"
        assert self.process.returncode == 0
        return output["result"]


class ScenarioRunner:
    """Starts the scenarios of one Node project against servers; several may run at once, also on one storeId."""

    def __init__(self, node, directory, project, args=()):
        self.node = node
        self.directory = directory
        self.project = project
        self.args = tuple(args)
        self.started = []
        if not hasattr(node, "interop_logs"):
            node.interop_logs = {}

    @staticmethod
    def new_store_id(name):
        return f"{name}-{uuid.uuid4().hex[:12]}"

    def start(self, name, servers, store_id=None, args=(), timeout_s=SCENARIO_TIMEOUT_S):
        """Starts ``scenario.mjs <name>`` on ``store_id`` (a fresh one by default) without waiting for it; the
        scenario gives up after ``timeout_s`` (its own waits take an eighth of that each)."""
        # Numbered when the test runs the same scenario more than once at a time (one process per client).
        label = f"{self.project.name}/{name}" + (f"-{len(self.started)}" if self.started else "")
        stderr_path = self.directory / f"{label.replace('/', '-')}.stderr"
        command = ["node", "scenario.mjs", name, "--store-id", store_id or self.new_store_id(name)]
        command += ["--token", AUTH_TOKEN, "--timeout-ms", str(timeout_s * 1000), *self.args, *args]
        for server in servers:
            command += ["--url", server.url]
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(command, cwd=self.project, stdout=subprocess.PIPE, stderr=stderr, text=True)
        scenario = Scenario(self, label, process, stderr_path, servers, timeout_s)
        self.started.append(scenario)
        return scenario

    def run(self, name, servers, **options):
        return self.start(name, servers, **options).result()

    def attach_logs(self, scenario):
        self.node.interop_logs[f"scenario {scenario.label} stderr (tail)"] = tail(scenario.stderr_path)
        for server in scenario.servers:
            self.node.interop_logs[f"daphne :{server.port} log (tail)"] = server.log_tail()

    def stop_all(self):
        """Kills scenarios a failed test left running (e.g. the other half of a two-process scenario)."""
        for scenario in self.started:
            if scenario.process.poll() is None:
                scenario.process.kill()
                scenario.process.communicate()
                self.attach_logs(scenario)


@pytest.fixture
def scenarios(request, tmp_path):
    """A ``ScenarioRunner`` for the LiveStore 0.3.1 scenarios; those still running when the test ends are killed."""
    runner = ScenarioRunner(request.node, tmp_path, INTEROP_DIR, args=["--wrong-token", WRONG_TOKEN])
    yield runner
    runner.stop_all()


@pytest.fixture(scope="module")
def v04_project():
    """Skips tests of the LiveStore 0.4.0 scenarios where ``v04/`` is not installed; CI must run them, so there
    it fails. A module lists it first (``usefixtures``) to skip before any server starts."""
    require_node_project(V04_DIR)


@pytest.fixture
def v04_scenarios(request, tmp_path, v04_project):
    """A ``ScenarioRunner`` for the LiveStore 0.4.0 scenarios of ``v04/``, which may reset stores as admin."""
    runner = ScenarioRunner(request.node, tmp_path, V04_DIR, args=["--admin-secret", ADMIN_SECRET])
    yield runner
    runner.stop_all()


@pytest.fixture
def run_scenario(scenarios):
    """Runs ``scenario.mjs <name>`` (LiveStore 0.3.1) against ``servers`` on a fresh storeId; returns its result."""

    def run(name, *servers):
        return scenarios.run(name, servers)

    return run


def tail(path, lines=80):
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
