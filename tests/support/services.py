"""Reachability of the real PostgreSQL and Redis the production-path tests use.

On a newcomer's machine without these services the tests that need them are
skipped with a reason that says so; under ``CI=true`` an unreachable service
fails the test loudly instead, because CI must exercise the production path.
"""

import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("LIVESYNC_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LIVESYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(url):
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
            return True
    except OSError:
        return False


def require(name, url):
    """Skip (or, under CI, fail) the calling test unless ``url`` accepts TCP connections."""
    if reachable(url):
        return
    message = f"{name} is not reachable at {urlsplit(url).netloc}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must run the {name} tests", pytrace=False)
    pytest.skip(f"{message}: {name} tests skipped")


def require_postgres():
    require("PostgreSQL", POSTGRES_URL)


def require_redis():
    require("Redis", REDIS_URL)
