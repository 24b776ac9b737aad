"""The version matrix: every supported (Python, Django) pair, each in a virtualenv of its own.

For every pair, the in-process tests (everything but interop, faults, hostile and browser) on SQLite and the
in-memory channel layer. For the oldest and the newest pair also the in-process tests marked ``protocol`` on
PostgreSQL + Redis, and the README's embedding steps in a fresh ``startproject`` with the wheel, synced by
real LiveStore 0.3.1 and 0.4.0 clients (``tests/interop/test_embedding.py``, and under ``runserver``
``tests/interop/test_embedding_runserver.py``).

A deprecation warning fails every session (``pyproject.toml``'s ``filterwarnings``), so a Django or Channels
deprecation shows up a release before it breaks. ``make test`` runs the whole suite once, on the example
project's pinned versions; ``make matrix`` runs this file, and ``.ci/run`` runs both. One pair:
``nox -s "tests(python='3.13', django='6.1')"``.
"""

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

# Django 6.0 and later need Python 3.12 or later.
PAIRS = [
    ("3.11", "5.2"),
    ("3.12", "5.2"),
    ("3.12", "6.0"),
    ("3.12", "6.1"),
    ("3.13", "5.2"),
    ("3.13", "6.0"),
    ("3.13", "6.1"),
]
OLDEST_AND_NEWEST = [PAIRS[0], PAIRS[-1]]
FAST_TIER = "not interop and not faults and not hostile and not browser"
# Tools requirements.txt pins that run outside the test suite (make lint, this file).
NOT_FOR_TESTS = ("nox==", "ruff==", "mypy==", "django-stubs==", "types-channels==")


def _install(session, django):
    """The package with every extra, the test tools as ``requirements.txt`` pins them, and Django ``django``."""
    pinned = [
        line.strip()
        for line in Path("requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-e", "Django==", *NOT_FOR_TESTS))
    ]
    session.install("-e", ".[all]", *pinned, f"Django~={django}.0")
    session.run("python", "-m", "django", "--version")


@nox.session
@nox.parametrize(("python", "django"), PAIRS)
def tests(session, django):
    """The in-process tests on SQLite; for the oldest and newest pair also on PostgreSQL + Redis, and the
    embedding steps with the wheel (and this session's Django) synced by real clients of both generations.
    One virtualenv per pair serves all three."""
    _install(session, django)
    session.run("python", "-m", "pytest", "-m", FAST_TIER)
    if (session.python, django) in OLDEST_AND_NEWEST:
        session.run("python", "-m", "pytest", "-m", "protocol", env={"LIVESYNC_TEST_BACKEND": "postgres"})
        # runserver serves through daphne's own command, whose hand-over from Django's changes between versions.
        session.run(
            "python", "-m", "pytest", "tests/interop/test_embedding.py", "tests/interop/test_embedding_runserver.py"
        )
