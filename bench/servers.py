"""The servers a benchmark runs against: livesync (daphne on SQLite, or N processes on PostgreSQL + Redis), the
reference (``bench/reference``: ``@livestore/sync-cf@0.3.1`` under ``wrangler dev``), or any URL."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench import procinfo
from livesync_project.settings import DEFAULT_REDIS_CHANNEL_LAYER

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT / "bench" / "reference"

# The deployment livesync is benchmarked as: production settings, and the token check the reference does too.
LIVESYNC_SETTINGS = {
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
    "LIVESYNC_ADMIN_SECRET": "bench-admin-secret",
    "LIVESYNC_AUTH_TOKEN": "insecure-token-change-me",
    # The bench reaches PostgreSQL directly, where prepared statements are safe (see the README's "Prepared
    # statements").
    "DATABASE_PREPARED_STATEMENTS": "true",
}


def protocol_suffix(protocol):
    """How a server's name says which client it is benchmarked with: nothing for 0.3, ``-0.4ws`` for 0.4 ws."""
    return "" if protocol == "0.3" else "-" + protocol.replace("-", "")


def generator_suffix(generator):
    """How a server's name says which load generator drives it: nothing for Python's, ``-node`` for Node's."""
    return "" if generator == "python" else f"-{generator}"


def generator_note(generator):
    return "" if generator == "python" else f", {generator} load generator"


class Unavailable(RuntimeError):
    """This server cannot run here; the message says why."""


class Server:
    name = "server"
    description = ""
    protocol = "0.3"  # the load generator's client for it: "0.3" or "0.4-ws" (bench.clients)
    generator = "python"  # the load generator: "python" (bench.loadgen) or "node" (bench/node)
    scenarios = None  # the scenarios run against it: None for every one

    def __init__(self):
        self.urls = []
        self.pids = []  # the server processes whose memory and CPU are reported
        self.aux_pids = []  # helpers whose CPU is reported apart

    @property
    def url(self):
        return self.urls[0]

    def start(self):
        return self

    def stop(self):
        pass

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


class ExternalServer(Server):
    """A server someone else runs at ``url``; memory and CPU only if its ``pid`` is given."""

    def __init__(self, url, pid=None, name=None, protocol="0.3", generator="python"):
        super().__init__()
        self.name = name or "server" + protocol_suffix(protocol) + generator_suffix(generator)
        self.protocol = protocol
        self.generator = generator
        self.urls = [url.rstrip("/")]
        self.pids = [pid] if pid else []
        self.description = f"{url}, {protocol} client{generator_note(generator)}" + (f" (pid {pid})" if pid else "")


def postgres_and_redis_problem():
    from tests.support.services import POSTGRES_URL, REDIS_URL, reachable

    for label, url in (("PostgreSQL", POSTGRES_URL), ("Redis", REDIS_URL)):
        if not reachable(url):
            return f"{label} is not reachable"
    return None


# The Redis channel layers livesync can run on, chosen as the example project chooses them.
LAYERS = {
    "core": ("channels_redis.core.RedisChannelLayer", {"LIVESYNC_CHANNEL_LAYER": "core"}),
    "pubsub": ("channels_redis.pubsub.RedisPubSubChannelLayer", {"LIVESYNC_CHANNEL_LAYER": "pubsub"}),
}


class LivesyncServer(Server):
    """``processes`` daphne processes serving livesync on a fresh database.

    ``backend="sqlite"``: the embedded default (a new SQLite file, the in-memory channel layer; one process).
    ``backend="postgres"``: a new PostgreSQL database and Redis (``tests/services.py`` finds both), on the
    channel layer ``layer`` (a key of ``LAYERS``; the project's default if None). ``protocol`` is the client the
    load generator speaks to it.
    """

    def __init__(
        self,
        backend="sqlite",
        processes=1,
        workdir=None,
        name=None,
        extra_settings=None,
        layer=None,
        protocol="0.3",
        store_files=0,
        generator="python",
    ):
        super().__init__()
        if backend == "sqlite" and processes != 1:
            raise ValueError("the embedded default serves from one process")
        if backend == "sqlite" and layer is not None:
            raise ValueError("the embedded default has the in-memory channel layer")
        if store_files and backend != "sqlite":
            raise ValueError("store_files spreads stores over SQLite files")
        self.backend = backend
        self.processes = processes
        self.protocol = protocol
        self.generator = generator
        self.name = name or f"livesync-{backend}" + protocol_suffix(protocol) + generator_suffix(generator)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="livesync-bench-"))
        self._own_workdir = workdir is None  # a directory of our own is removed on stop()
        layer_class, layer_settings = LAYERS[layer or DEFAULT_REDIS_CHANNEL_LAYER]
        self.extra_settings = {**layer_settings, **(extra_settings or {})}
        # SQLite files stores are spread over besides the default database (LIVESYNC_STORE_DATABASE_URLS).
        self.store_files = store_files
        self.servers = []
        self._stack = None
        if backend == "sqlite":
            self.description = "daphne, SQLite file + in-memory channel layer"
            if store_files:
                self.description += f", stores spread over {store_files} more SQLite files"
        else:
            self.description = (
                f"{processes} daphne process{'es' if processes > 1 else ''}, PostgreSQL + Redis ({layer_class})"
            )
        self.description += f", {protocol} client{generator_note(generator)}"

    def problem(self):
        if self.backend == "postgres":
            return postgres_and_redis_problem()
        return None

    def start(self):
        from tests.support.daphne import DaphneServer
        from tests.support.databases import postgres_database, sqlite_database, sqlite_store_databases
        from tests.support.services import REDIS_URL

        problem = self.problem()
        if problem:
            raise Unavailable(problem)
        self._stack = ExitStack()
        directory = self.workdir / f"{self.name}-{int(time.time() * 1000)}"
        directory.mkdir(parents=True)
        if self.backend == "sqlite":
            settings = {"DATABASE_URL": sqlite_database(directory)}
            if self.store_files:
                settings.update(sqlite_store_databases(directory, self.store_files, settings["DATABASE_URL"]))
        else:
            settings = {"DATABASE_URL": self._stack.enter_context(postgres_database()), "REDIS_URL": REDIS_URL}
        self.database_url = settings["DATABASE_URL"]
        settings.update(LIVESYNC_SETTINGS)
        settings.update(self.extra_settings)
        for index in range(self.processes):
            server = DaphneServer(directory / f"daphne-{index}.log", settings)
            self._stack.enter_context(server)
            self.servers.append(server)
        self.urls = [server.url for server in self.servers]
        self.pids = [server.pid for server in self.servers]
        if self.backend == "postgres":
            self._warm_up()
        return self

    def _warm_up(self):
        """Make the database one that has served a store, as a deployment's is: push one event to a store of its
        own through every process, then wait for the spare tables its creation set off.

        ``migrate`` makes no spare tables: a database's first new stores create their tables and start the
        background refill (``syncapp.storage.spares``). A measurement on a database that never had a store would
        time that first refill, which a deployment pays once in its life, instead of new stores as a deployment
        in operation meets them.
        """
        import asyncio

        import psycopg

        from bench import frames, wsraw

        async def push_one(url, store_id):
            socket = await wsraw.connect(frames.store_url(url, store_id))
            try:
                socket.send(frames.todo_push("warm-up", 1, 1))
                await socket.recv()
            finally:
                await socket.close()

        for index, url in enumerate(self.urls):
            asyncio.run(push_one(url, f"bench-warm-up-{index}"))
        wanted = int(self.extra_settings.get("LIVESYNC_SPARE_TABLES", 64))
        deadline = time.monotonic() + 60
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while time.monotonic() < deadline:
                (made,) = connection.execute(
                    "SELECT count(*) FROM pg_class WHERE starts_with(relname, 'livesync_spare_') AND relkind = 'r'"
                ).fetchone()
                if made >= wanted:
                    return
                time.sleep(0.2)
        raise Unavailable(f"the warm-up's spare tables were not made within 60 s ({made} of {wanted})")

    def stop(self):
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self.servers = []
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self):
        return "\n".join(server.log_tail(20) for server in self.servers)


def reference_problem():
    """Why the reference cannot start here, or None."""
    if shutil.which("node") is None or shutil.which("npx") is None:
        return "node/npx not found"
    if not (REFERENCE_DIR / "node_modules" / ".bin" / "wrangler").exists():
        return "bench/reference/node_modules is missing: run `npm ci` in bench/reference"
    return None


class ReferenceServer(Server):
    """``bench/reference/start.sh``: ``wrangler dev`` on loopback, telemetry off, state in a temp directory.

    ``pids`` is the ``workerd`` that runs the worker, its Durable Objects and the local D1. ``wrangler dev``
    also runs a second ``workerd`` as a proxy in front of it (a development-only hop; production has the
    Cloudflare edge there): ``proxy_pids``.
    """

    def __init__(self, workdir=None, port=None, ready_timeout=180.0, generator="python"):
        super().__init__()
        self.name = "reference" + generator_suffix(generator)
        self.generator = generator
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="livesync-bench-"))
        self._own_workdir = workdir is None  # a directory of our own is removed on stop()
        self.requested_port = port
        self.port = None
        self.ready_timeout = ready_timeout
        self.proxy_pids = []
        self.process = None
        self.description = "@livestore/sync-cf@0.3.1 under wrangler dev (workerd, local D1)" + generator_note(generator)
        self.note_on_failures = (
            "wrangler dev's proxy workerd uses ~9 file descriptors per WebSocket and dies "
            "with 'accept: Too many open files' when it reaches the open-files limit"
        )

    def start(self):
        from tests.support.daphne import free_port

        problem = reference_problem()
        if problem:
            raise Unavailable(problem)
        self.port = self.requested_port or free_port()
        directory = self.workdir / f"reference-{int(time.time() * 1000)}"
        (directory / "state").mkdir(parents=True)
        self.log_path = directory / "wrangler.log"
        env = {**os.environ, "READY_TIMEOUT": str(int(self.ready_timeout))}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["bash", str(REFERENCE_DIR / "start.sh"), str(self.port), str(directory / "state")],
                cwd=REFERENCE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.ready_timeout + 10
        while True:
            if self.process.poll() is not None:
                raise Unavailable(f"wrangler dev exited with {self.process.returncode}:\n{self.log_tail()}")
            if "ready http" in self.log_path.read_text(errors="replace"):
                break
            if time.monotonic() > deadline:
                raise Unavailable(f"wrangler dev did not start within {self.ready_timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)
        self.urls = [f"ws://127.0.0.1:{self.port}"]
        workerds = [pid for pid in procinfo.descendants(self.process.pid) if procinfo.comm(pid) == "workerd"]
        entry = f"entry=127.0.0.1:{self.port}"
        self.proxy_pids = [pid for pid in workerds if entry in procinfo.cmdline(pid)]
        self.pids = [pid for pid in workerds if pid not in self.proxy_pids] or workerds
        # wrangler's node processes, esbuild and the proxy workerd: development plumbing, CPU shown apart
        self.aux_pids = [pid for pid in procinfo.descendants(self.process.pid) if pid not in self.pids]
        return self

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # start.sh stops wrangler, its workerd and esbuild
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        # Anything left of the process group start.sh led (its own session): nothing may outlive the run.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def http_ok(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url.replace("ws://", "http://", 1) + "/", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
