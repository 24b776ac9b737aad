"""Fresh, migrated databases for livesync server processes, named by ``DATABASE_URL``."""

import subprocess
import sys
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.support.daphne import REPO_ROOT, DaphneServer, server_environment
from tests.support.services import POSTGRES_URL, require_postgres


def migrate(database_url, settings=None, database="default"):
    """Runs ``manage.py migrate --database=<database>`` with ``DATABASE_URL`` (and ``settings``) in its
    environment, raising with its output if it fails."""
    completed = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", f"--database={database}"],
        cwd=REPO_ROOT,
        env=server_environment({"DATABASE_URL": database_url, **(settings or {})}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"migrate failed for {database_url}:\n{completed.stdout}\n{completed.stderr}")


def sqlite_database(directory):
    """``DATABASE_URL`` of a new, migrated SQLite file in ``directory`` (e.g. a pytest ``tmp_path``)."""
    database_url = f"sqlite:///{(directory / 'livesync.sqlite3').resolve()}"
    migrate(database_url)
    return database_url


def sqlite_store_databases(directory, count, database_url):
    """``LIVESYNC_STORE_DATABASE_URLS`` of ``count`` new, migrated SQLite files in ``directory`` (``stores_1``…)
    for the server whose default database is ``database_url``."""
    urls = [f"sqlite:///{(directory / f'stores-{number}.sqlite3').resolve()}" for number in range(1, count + 1)]
    settings = {"LIVESYNC_STORE_DATABASE_URLS": ",".join(urls)}
    for number in range(1, count + 1):
        migrate(database_url, settings, database=f"stores_{number}")
    return settings


def sqlite_daphne(directory, settings=None, **options):
    """A ``DaphneServer`` (not started) on a new SQLite database in ``directory``, logging to ``daphne.log``
    there, with ``settings`` on top of the database; ``options`` go to ``DaphneServer``."""
    environment = {"DATABASE_URL": sqlite_database(directory), **(settings or {})}
    return DaphneServer(directory / "daphne.log", environment, **options)


@contextmanager
def postgres_database(migrated=True):
    """Yields the ``DATABASE_URL`` of a new PostgreSQL database (migrated unless told otherwise) and drops it
    afterwards.

    Skips (or under CI fails) the calling test when PostgreSQL is not reachable.
    """
    require_postgres()
    name = f"livesync_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        database_url = urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        if migrated:
            migrate(database_url)
        yield database_url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def connect_to_test_database():
    """A psycopg connection of the test's own to the Django test run's PostgreSQL database (beside Django's)."""
    from django.db import connections

    name = connections["default"].settings_dict["NAME"]
    return psycopg.connect(urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}")))
