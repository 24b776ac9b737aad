"""Hostile clients against real daphne processes, on the embedded default and on PostgreSQL + Redis.

``server`` is one daphne process per backend for a whole module (each test uses stores of its own);
``servers`` starts processes of its own, several on one PostgreSQL database and Redis where a test needs
them. After each test the processes' logs must hold no traceback: hostile input is answered, never crashed on.
"""

import uuid
from contextlib import contextmanager

import pytest

from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database, sqlite_database
from tests.support.services import REDIS_URL, require_redis

BACKENDS = ("sqlite", "postgres")


def _environment(backend, database_url, extra=None):
    environment = {"DATABASE_URL": database_url, "LIVESYNC_ADMIN_SECRET": "hostile-admin-secret"}
    if backend == "postgres":
        require_redis()
        environment["REDIS_URL"] = REDIS_URL
    return {**environment, **(extra or {})}


class Deployment:
    """daphne processes sharing one database (and, on PostgreSQL, one Redis)."""

    def __init__(self, backend, database_url, directory):
        self.backend = backend
        self.database_url = database_url
        self.directory = directory
        self.processes = []

    def start(self, settings=None, daphne_args=()):
        index = len(self.processes)
        server = DaphneServer(
            self.directory / f"daphne-{self.backend}-{index}.log",
            _environment(self.backend, self.database_url, settings),
            daphne_args=daphne_args,
        )
        self.processes.append(server.start())
        return server

    def stop(self):
        for server in self.processes:
            if server.returncode is None:
                server.stop()

    def tracebacks(self):
        return [server.log_path.name for server in self.processes if "Traceback" in _log(server)]


def _log(server):
    return server.log_path.read_text(errors="replace") if server.log_path.exists() else ""


def _database(backend, directory):
    if backend == "sqlite":
        return _Sqlite(directory)
    return postgres_database()


class _Sqlite:
    def __init__(self, directory):
        self.directory = directory

    def __enter__(self):
        return sqlite_database(self.directory)

    def __exit__(self, *exc_info):
        return False


@contextmanager
def _deployment(backend, directory):
    with _database(backend, directory) as database_url:
        deployment = Deployment(backend, database_url, directory)
        try:
            yield deployment
        finally:
            deployment.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(request, tmp_path_factory):
    with _deployment(request.param, tmp_path_factory.mktemp(f"hostile-{request.param}")) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def server(deployment):
    """One daphne process of the module's backend."""
    return deployment.start()


@pytest.fixture(autouse=True)
def no_tracebacks(request):
    """Every process a test used logged no traceback."""
    yield
    for name in ("deployment", "postgres_deployment"):
        if name in request.fixturenames:
            deployment = request.getfixturevalue(name)
            assert deployment.tracebacks() == [], f"tracebacks logged in {deployment.tracebacks()}"


@pytest.fixture
def store_id():
    return f"hostile-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def postgres_deployment(tmp_path_factory):
    """daphne processes on one PostgreSQL database and Redis, for tests about more than one process."""
    with _deployment("postgres", tmp_path_factory.mktemp("hostile-postgres-processes")) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def two_processes(postgres_deployment):
    return postgres_deployment.start(), postgres_deployment.start()
