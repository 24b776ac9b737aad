"""``livesync_tail`` killed with SIGKILL mid-way resumes from its saved cursor and processes every event once.

The handler projects events into a table of the default database, in the
transaction that moves the cursor (``syncapp/management/tail.py``): the kill loses at
most the page in flight, which the next run does again, and no event is
recorded twice (the table's primary key would refuse it and fail the run).
"""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.support.daphne import REPO_ROOT, server_environment
from tests.support.databases import sqlite_database
from tests.support.v03_client import events

pytestmark = pytest.mark.faults

EVENTS = 300
TAIL = [sys.executable, "manage.py", "livesync_tail", "projection"]
HANDLER = ["--handler", "tests.support.tail_handlers.record_slowly", "--page-size", "10"]


def recorded(path):
    with sqlite3.connect(path) as database:
        try:
            return database.execute("SELECT COUNT(*), COUNT(DISTINCT seq_num) FROM tail_seen").fetchone()
        except sqlite3.OperationalError:
            return (0, 0)


def test_a_killed_tail_resumes_from_its_cursor_and_records_every_event_once(tmp_path):
    database_url = sqlite_database(tmp_path)
    path = database_url.removeprefix("sqlite:///")
    environment = server_environment({"DATABASE_URL": database_url})
    log = tmp_path / "log.ndjson"
    log.write_text(
        "".join(json.dumps({**e, "createdAt": "2026-01-01T00:00:00.000Z"}) + "\n" for e in events(1, EVENTS))
    )
    subprocess.run(
        [sys.executable, "manage.py", "livesync_import", "tailed", str(log)],
        cwd=REPO_ROOT,
        env=environment,
        check=True,
        capture_output=True,
    )

    follower = subprocess.Popen([*TAIL, "tailed", *HANDLER], cwd=REPO_ROOT, env=environment, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while recorded(path)[0] < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    follower.send_signal(signal.SIGKILL)
    follower.wait(10)
    before_restart = recorded(path)[0]
    assert 50 <= before_restart < EVENTS, "the kill must land mid-way"

    finished = subprocess.run(
        [*TAIL, "tailed", *HANDLER, "--once"], cwd=REPO_ROOT, env=environment, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    assert f"Tailed {EVENTS - before_restart} events" in finished.stderr
    assert recorded(path) == (EVENTS, EVENTS)
    with sqlite3.connect(path) as database:
        cursor = database.execute("SELECT seq_num FROM syncapp_tailcursor WHERE consumer = 'projection'").fetchone()
    assert cursor == (EVENTS,)
