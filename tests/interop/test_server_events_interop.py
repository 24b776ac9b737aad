"""Unmodified LiveStore clients receive events that Django code commits to their store while they push to it.

Two 0.3.1 clients (``makeCfSync``) through one daphne process and a 0.4.0
``makeWsSync`` and ``makeHttpSync`` client through another, all on one store
on PostgreSQL + Redis, commit 20 todos each while a separate Python process
commits 20 more with ``syncapp.events.commit`` (some inside
``transaction.atomic()``). Every client must materialize all 100, each
created once, and the server's log must be one chain that interleaves the
server's events with the clients'.
"""

import json
import subprocess
import sys

import psycopg
import pytest

from tests.interop.expectations import assert_same_eventlog, assert_synced, rows
from tests.support.daphne import REPO_ROOT, server_environment

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("v04_project")]

CLIENT_TODOS = [f"{client}-{n:02d}" for client in ("v03-a", "v03-b", "v04-ws", "v04-http") for n in range(20)]
SERVER_TODOS = [f"server-{n:02d}" for n in range(20)]


def test_clients_of_both_generations_materialize_server_commits_racing_their_pushes(
    postgres_redis_servers, scenarios, v04_scenarios
):
    first, second = postgres_redis_servers
    store_id = scenarios.new_store_id("server-commits")
    total = ["--total-events", str(len(CLIENT_TODOS) + len(SERVER_TODOS))]
    old = scenarios.start("mixed-generations", [first], store_id=store_id, args=total)
    new = v04_scenarios.start("mixed", [second], store_id=store_id, args=total)
    committer = subprocess.run(
        [sys.executable, "-m", "tests.support.server_committer", "--store-id", store_id, "--count", "20"],
        cwd=REPO_ROOT,
        env=server_environment(first.settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert committer.returncode == 0, committer.stderr
    assert len(json.loads(committer.stdout)) == len(SERVER_TODOS)

    old_stores, new_stores = old.result()["stores"], new.result()["stores"]
    everything = rows(CLIENT_TODOS + SERVER_TODOS)
    for store in old_stores + new_stores:
        assert store["todos"] == everything, store["clientId"]
        assert_synced(store, 100)
    assert_same_eventlog(new_stores, 100)

    with psycopg.connect(first.settings["DATABASE_URL"]) as connection:
        table = connection.execute("SELECT table_name FROM syncapp_store WHERE store_id = %s", [store_id]).fetchone()[0]
        log = connection.execute(
            f'SELECT "seqNum", "parentSeqNum", "clientId" FROM "livesync"."{table}" ORDER BY 1'
        ).fetchall()
    assert [(seq, parent) for seq, parent, _ in log] == [(n, n - 1) for n in range(1, 101)]
    by_server = [position for position, (_, _, client_id) in enumerate(log) if client_id == "livesync-server"]
    assert len(by_server) == 20
    pushed_after = [client_id for _, _, client_id in log[by_server[0] :] if client_id != "livesync-server"]
    assert pushed_after, "no client pushed after the server's first commit: they did not race"
