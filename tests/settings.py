"""Test settings: the example project's, on the backend ``LIVESYNC_TEST_BACKEND`` names.

``sqlite`` (default): a SQLite file (not ``:memory:``, because storage runs on a
pool of threads, each with its own connection) and the in-memory channel layer.
``postgres``: the real PostgreSQL and Redis of ``tests/support/services.py``.
"""

import os
import tempfile

import dj_database_url

from livesync_project.settings import *  # noqa: F403
from livesync_project.settings import (
    DEFAULT_REDIS_CHANNEL_LAYER,
    POSTGRES_OPTIONS,
    SQLITE_OPTIONS,
    redis_channel_layer,
)
from tests.support.services import POSTGRES_URL, REDIS_URL

BACKEND = os.environ.get("LIVESYNC_TEST_BACKEND", "sqlite")

if BACKEND == "postgres":
    DATABASES = {"default": dj_database_url.parse(POSTGRES_URL, conn_max_age=0)}
    DATABASES["default"]["OPTIONS"] = POSTGRES_OPTIONS
    # One test database per run, so concurrent runs on one machine never collide.
    DATABASES["default"]["TEST"] = {"NAME": f"test_livesync_{os.getpid()}"}
    # A second database to spread stores over (tests/storage/test_store_databases.py); unused by the others.
    DATABASES["stores_b"] = {**DATABASES["default"], "TEST": {"NAME": f"test_livesync_b_{os.getpid()}"}}
    CHANNEL_LAYERS = {
        "default": redis_channel_layer(REDIS_URL, os.environ.get("LIVESYNC_CHANNEL_LAYER", DEFAULT_REDIS_CHANNEL_LAYER))
    }
else:
    _test_db = os.path.join(tempfile.gettempdir(), f"livesync-test-{os.getpid()}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _test_db,
            "OPTIONS": SQLITE_OPTIONS,
            "TEST": {"NAME": _test_db},
        }
    }
    # A second database to spread stores over (tests/storage/test_store_databases.py); unused by the others.
    _second_test_db = os.path.join(tempfile.gettempdir(), f"livesync-test-b-{os.getpid()}.sqlite3")
    DATABASES["stores_b"] = {
        **DATABASES["default"],
        "NAME": _second_test_db,
        "OPTIONS": dict(SQLITE_OPTIONS),
        "TEST": {"NAME": _second_test_db},
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}

# pytest-django runs the tests with DEBUG off, where livesync's checks refuse the example's public development key
# (syncapp.E014): the in-process tests sign with a key of their own.
SECRET_KEY = "tests-only-secret-key-that-is-long-enough-for-django-0123456789"
# No spare tables in-process (tests/storage/test_spares.py turns them on): a refill running on past its test would make
# the spares tests' counts race. The daphne processes of the interop, fault and hostile tests keep the default.
LIVESYNC = {"ADMIN_SECRET": "test-admin-secret", "SPARE_TABLES": 0}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
