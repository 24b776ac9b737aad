"""Fault-tolerance tests: several real daphne processes on one PostgreSQL database and Redis, each process
reaching both through a TCP proxy of its own (``tests/support/proxy.py``), so a test cuts one process's network
to a service (or every process's) while the machine's services keep running.

No pytest-django database here: the processes are the system under test, and the tests look at the database
only through their own psycopg connection.
"""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.cluster import Node
from tests.support.databases import postgres_database
from tests.support.services import require_postgres, require_redis

# What each test measured, printed at the end of the run (and recorded as junit properties).
OBSERVATIONS = []


def pytest_terminal_summary(terminalreporter):
    if not OBSERVATIONS:
        return
    terminalreporter.section("fault observations")
    for test, values in OBSERVATIONS:
        terminalreporter.write_line(f"{test}:")
        for key, value in values.items():
            terminalreporter.write_line(f"    {key}: {value}")


@pytest.fixture
def observe(request, record_property):
    """``observe(key, value)``: note a measurement (recovery time, close code, …) for the run's summary."""
    values = {}

    def note(key, value):
        value = _rounded(value)
        values[key] = value
        record_property(key, value)
        print(f"[{request.node.name}] {key}: {value}")

    yield note
    if values:
        OBSERVATIONS.append((request.node.name, values))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, (list, tuple)):
        return type(value)(_rounded(item) for item in value)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="session")
def fault_database():
    """One migrated PostgreSQL database for the whole fault run (each test uses storeIds of its own)."""
    require_postgres()
    require_redis()
    with postgres_database() as database_url:
        yield database_url


@pytest.fixture
def store_id(request):
    return f"fault-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def nodes(fault_database, tmp_path, request):
    """``nodes(count, daphne_args=(), settings=None)``: start ``count`` processes at once and return them.

    Every process and proxy is stopped after the test; a failing test gets each process's log tail attached.
    """
    started = []

    def start(count, daphne_args=(), settings=None):
        batch = [
            Node(f"p{len(started) + n}", tmp_path, fault_database, daphne_args=daphne_args, settings=settings)
            for n in range(count)
        ]
        started.extend(batch)
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda node: node.server.start(), batch))
        return batch

    request.node.fault_nodes = started
    yield start
    for node in started:
        node.shutdown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown":
        return
    if report.failed:
        for node in getattr(item, "fault_nodes", ()):
            report.sections.append((f"daphne {node.name} :{node.server.port} log (tail)", node.server.log_tail(80)))
