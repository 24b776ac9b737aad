"""Real components that sit between clients, livesync and PostgreSQL, from Debian's packages, on free ports.

- ``LoadBalancer``: nginx in front of several daphne processes, configured from ``deploy/nginx.conf`` (its
  ``location`` blocks as shipped; only the upstream servers and the port are this test's).
- ``PgBouncer``: PgBouncer in transaction pooling mode in front of the machine's PostgreSQL.

Each runs as a process of its own for one test and is stopped with it. Without the package, a test that needs
one is skipped, and under ``CI=true`` it fails (``.ci/run`` installs both).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.daphne import REPO_ROOT, free_port

NGINX = "/usr/sbin/nginx"
PGBOUNCER = "/usr/sbin/pgbouncer"


def require_program(path, package):
    """Skip (under CI: fail) the calling test unless Debian's ``package`` installed ``path``."""
    if os.access(path, os.X_OK):
        return
    message = f"{path} not found (Debian package {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must run these tests", pytrace=False)
    pytest.skip(message)


def _stop(process, signum=signal.SIGTERM):
    """Ask ``process`` to stop with ``signum``; kill it if it has not within 10 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_port(port, process, log_path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{Path(log_path).read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


class _Gateway:
    """What the gateways share: a process of their own, its log, ``with`` to start and stop it."""

    log_path: Path

    def log_tail(self, lines=40):
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class LoadBalancer(_Gateway):
    """nginx on a free port, balancing over ``upstream_ports`` with ``deploy/nginx.conf``'s proxy settings."""

    def __init__(self, directory, upstream_ports):
        require_program(NGINX, "nginx-light")
        self.directory = Path(directory) / "nginx"
        self.directory.mkdir(exist_ok=True)
        self.port = free_port()
        self.log_path = self.directory / "error.log"
        self._process = None
        shipped = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
        servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstream_ports)
        site = re.sub(r"upstream livesync \{.*?\}", f"upstream livesync {{\n{servers}}}", shipped, flags=re.S)
        site = site.replace("listen 8000;", f"listen 127.0.0.1:{self.port};")
        assert f"listen 127.0.0.1:{self.port};" in site and servers in site, "deploy/nginx.conf changed its shape"
        temp = self.directory
        (self.directory / "nginx.conf").write_text(
            "daemon off;\nworker_processes 1;\nuser root;\n"
            f"pid {temp}/nginx.pid;\nerror_log {self.log_path} warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"  access_log {temp}/access.log;\n"
            f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
            f"{site}\n}}\n"
        )

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    def start(self):
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [NGINX, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(self.port, self._process, self.log_path)
        return self

    def stop(self):
        # SIGQUIT: nginx's graceful shutdown.
        _stop(self._process, signal.SIGQUIT)


class PgBouncer(_Gateway):
    """PgBouncer in transaction pooling mode on a free port, in front of ``database_url``'s server.

    PgBouncer refuses to run as root, so it runs as the ``postgres`` user, from a folder that user can read.
    ``url(database_url)`` is that database's URL through the pooler.
    """

    def __init__(self, database_url, pool_size=4):
        require_program(PGBOUNCER, "pgbouncer")
        target = urlsplit(database_url)
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="livesync-pgbouncer-"))
        self.directory.chmod(0o777)
        self.log_path = self.directory / "pgbouncer.log"
        self._process = None
        (self.directory / "users.txt").write_text(f'"{target.username or "postgres"}" ""\n')
        (self.directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={target.hostname} port={target.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.directory / 'users.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.log_path}\npidfile = {self.directory / 'pgbouncer.pid'}\n"
        )
        for path in self.directory.iterdir():
            path.chmod(0o666)

    def url(self, database_url):
        parts = urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0] + "@" if len(netloc) == 2 else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def start(self):
        self._process = subprocess.Popen(
            [PGBOUNCER, "-u", "postgres", str(self.directory / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        _wait_for_port(self.port, self._process, self.log_path)
        return self

    def stop(self):
        _stop(self._process)
        shutil.rmtree(self.directory, ignore_errors=True)
