"""The TodoMVC demo in real browsers: a real daphne process serving the built demo, and Chromium windows on it.

The tests need Debian's chromium and chromedriver, selenium, and an up-to-date build of ``examples/todomvc``
(``make demo``). Without them they are skipped with the reason; under ``CI=true`` they fail instead.
"""

import os
import shutil
import uuid

import pytest

from tests.support.browser import missing_browser_parts
from tests.support.daphne import REPO_ROOT, DaphneServer
from tests.support.databases import sqlite_database

from .todo_window import TodoWindow

DEMO_DIR = REPO_ROOT / "examples" / "todomvc"
# What the build is made from; a build older than any of these is stale.
DEMO_SOURCES = ("index.html", "vite.config.js", "package-lock.json", "src")
ARTIFACTS = REPO_ROOT / "test-artifacts"

# What the tests measured, printed at the end of the run (and recorded as junit properties).
OBSERVATIONS = []


def setup_problem():
    """Why the browser tests cannot run here, or None."""
    missing = missing_browser_parts()
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    built = DEMO_DIR / "dist" / "index.html"
    if not built.exists():
        return "examples/todomvc is not built (run `make demo`; needs Node 20+ and npm)"
    built_at = built.stat().st_mtime
    for name in DEMO_SOURCES:
        source = DEMO_DIR / name
        for path in [source, *source.rglob("*")] if source.is_dir() else [source]:
            if path.stat().st_mtime > built_at:
                return f"examples/todomvc/dist is older than {path.relative_to(REPO_ROOT)} (run `make demo`)"
    return None


@pytest.fixture(scope="module")
def browser_setup():
    problem = setup_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run under CI: {problem}", pytrace=False)
    pytest.skip(f"browser tests skipped: {problem}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The embedded default deployment (SQLite, in-memory channel layer) serving the demo at /demo/."""
    directory = tmp_path_factory.mktemp("todomvc-server")
    with DaphneServer(directory / "daphne.log", {"DATABASE_URL": sqlite_database(directory)}) as daphne:
        yield daphne


@pytest.fixture
def store_url(server):
    """``url(base)``: the demo on a store no other test uses, at ``base`` (the server, or a proxy in front of it)."""
    store_id = f"todos-{uuid.uuid4().hex[:8]}"
    return lambda base=server.http_url: f"{base}/demo/?storeId={store_id}"


@pytest.fixture
def open_window(tmp_path):
    """``open_window(name, url)``: a new Chromium window (own profile) showing ``url``; all closed afterwards."""
    windows = []

    def open_(name, url):
        window = TodoWindow(name, tmp_path / f"profile-{name}")
        windows.append(window)
        window.open(url)
        return window

    open_.windows = windows
    yield open_
    for window in windows:
        window.close()


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(window, name)``: the window as the user sees it, in ``test-artifacts/`` and ``tmp_path``."""

    def take(window, name):
        ARTIFACTS.mkdir(exist_ok=True)
        path = window.screenshot(ARTIFACTS / name)
        shutil.copy(path, tmp_path / name)
        return path

    return take


@pytest.fixture
def observe(request, record_property):
    """``observe(key, seconds)``: note a measurement for the run's summary."""
    values = {}

    def note(key, seconds):
        values[key] = round(seconds, 3)
        record_property(key, values[key])

    yield note
    if values:
        OBSERVATIONS.append((request.node.name, values))


def pytest_terminal_summary(terminalreporter):
    if not OBSERVATIONS:
        return
    terminalreporter.section("browser observations (seconds)")
    for test, values in OBSERVATIONS:
        terminalreporter.write_line(f"{test}: " + ", ".join(f"{key} {value}" for key, value in values.items()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries each window's console (page and workers) and the server's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for window in getattr(item.funcargs.get("open_window"), "windows", ()):
        try:
            console = window.collect_console()
        except Exception as error:  # noqa: BLE001 - a crashed browser is part of what to report
            console = [f"console unavailable: {error!r}"]
        report.sections.append((f"{window.name} console (tail)", "\n".join(console[-60:])))
    if "server" in item.funcargs:
        report.sections.append(("daphne log (tail)", item.funcargs["server"].log_tail()))
