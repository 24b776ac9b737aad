"""A real daphne process serving livesync, for tests that talk to it over real sockets.

The server is configured only through the environment a test passes in: settings the developer's shell may
export (``DATABASE_URL``, ``REDIS_URL``, ...) are not inherited, so a test gets exactly the deployment it names.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Environment the project reads; a test sets these explicitly or leaves them at the project's defaults.
SERVER_SETTINGS = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "DATABASE_PREPARED_STATEMENTS",
    "LIVESYNC_STORE_DATABASE_URLS",
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "LIVESYNC_CHANNEL_LAYER",
    "LIVESYNC_AUTH_TOKEN",
    "LIVESYNC_VALIDATE_PAYLOAD",
    "DJANGO_SECRET_KEY",
    "LIVESYNC_ADMIN_SECRET",
    "DJANGO_DEBUG",
    "DJANGO_ALLOWED_HOSTS",
    "LIVESYNC_METRICS",
    "LIVESYNC_METRICS_TOKEN",
    "LIVESYNC_METRICS_ALLOWED_ADDRESSES",
    "LIVESYNC_LOG_FORMAT",
)


def server_environment(settings):
    """The inherited environment without project settings, plus ``settings``."""
    inherited = {key: value for key, value in os.environ.items() if key not in SERVER_SETTINGS}
    return {**inherited, **settings}


# Ports free_port handed out in this process.
_handed_out = set()


def free_port():
    """A port nothing listens on now and that this process has not handed out before.

    Servers are often made together and started later: the kernel may give
    the port it just released to the next probe, and two servers would then
    share one port (the second fails to listen while the first answers its
    readiness check).
    """
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class DaphneServer:
    """``daphne -b 127.0.0.1 -p <port> livesync_project.asgi:application`` run from the repository root.

    ``application`` names another ASGI application to serve (the bench's bare echo consumer).

    Started by ``start()`` or ``with``; ``stop()`` sends SIGTERM, ``kill()`` SIGKILL, and ``start()`` again
    restarts it on the same port. Its output goes to ``log_path`` (appended across restarts). ``daphne_args``
    are extra daphne command-line options, e.g. ``("--ping-interval", "1", "--ping-timeout", "3")``.
    """

    def __init__(
        self,
        log_path,
        settings=None,
        port=None,
        ready_timeout=30.0,
        daphne_args=(),
        ready_host=None,
        application="livesync_project.asgi:application",
    ):
        self.log_path = Path(log_path)
        self.application = application
        self.settings = dict(settings or {})
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.daphne_args = tuple(str(arg) for arg in daphne_args)
        # The Host header of the readiness request, for a server whose ALLOWED_HOSTS does not take 127.0.0.1.
        self.ready_headers = {"Host": ready_host} if ready_host else {}
        self._process = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        """The process id of the running (or last) daphne process, or None before the first start."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self):
        """None while daphne runs (or before it started), else its exit status (negative: killed by a signal)."""
        return None if self._process is None else self._process.poll()

    def start(self):
        """Spawns the server and returns once ``GET /`` answers."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"daphne on port {self.port} is already running")
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.daphne_args]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*command, self.application],
                cwd=REPO_ROOT,
                env=server_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ready()
        return self

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL if daphne has not exited within ``timeout`` seconds."""
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        self._signal(signal.SIGKILL)
        self._process.wait()

    def log_tail(self, lines=60):
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        if self._process is not None and self._process.poll() is None:
            self.stop()

    def _signal(self, signum):
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def _wait_until_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self._process.returncode} before serving:\n{self.log_tail()}")
            try:
                ready = urllib.request.Request(f"{self.http_url}/", headers=self.ready_headers)
                with urllib.request.urlopen(ready, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"daphne did not answer GET / within {self.ready_timeout} s:\n{self.log_tail()}")
