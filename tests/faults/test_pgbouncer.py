"""PgBouncer in transaction pooling mode (Debian's package) between two daphne processes and PostgreSQL.

In transaction mode, each transaction of a client connection may run on another server connection. A statement
prepared on one server connection is known there by psycopg's name for it (``_pg3_0``, ``_pg3_1``, …), and on
another server connection the same name may stand for another client's statement: with a table name in its text,
another store's table. The example project's default settings must keep every store's pushes in that store's
table, and every store must converge.
"""

import asyncio
import subprocess
import sys

import pytest

from tests.support.cluster import Node, database_head, stored_events
from tests.support.daphne import REPO_ROOT, server_environment
from tests.support.gateways import PgBouncer
from tests.support.v03_socket import check_whole_batches, close_all, open_sockets, push_batches

pytestmark = [pytest.mark.faults, pytest.mark.chaos]

STORES = 5
PUSHERS_PER_STORE = 4
BATCHES_PER_PUSHER = 60


@pytest.fixture
def pooled_nodes(fault_database, tmp_path, request):
    """Two daphne processes with the example project's default settings, reaching PostgreSQL through PgBouncer."""
    with PgBouncer(fault_database) as bouncer:
        started = [Node(f"p{n}", tmp_path, bouncer.url(fault_database)) for n in range(2)]
        request.node.fault_nodes = started
        try:
            for node in started:
                node.server.start()
            yield started
        finally:
            for node in started:
                node.shutdown()


async def test_parallel_pushes_to_many_stores_through_pgbouncer_stay_in_their_own_tables(
    pooled_nodes, fault_database, store_id, observe
):
    store_ids = [f"{store_id}-{n}" for n in range(STORES)]
    specs = [
        (f"{store}-pusher-{n}", pooled_nodes[n % 2].url(store)) for store in store_ids for n in range(PUSHERS_PER_STORE)
    ]
    sockets = await open_sockets(specs)
    records = await asyncio.wait_for(
        asyncio.gather(*(push_batches(sock, sock.name, BATCHES_PER_PUSHER, 1) for sock in sockets)), 240
    )
    total = PUSHERS_PER_STORE * BATCHES_PER_PUSHER
    reached = await asyncio.gather(*(sock.wait_for_cursor(total, 30) for sock in sockets))
    await close_all(sockets)

    assert all(record.stopped_by is None for record in records), [r.stopped_by for r in records]
    for sock, ok in zip(sockets, reached, strict=True):
        assert ok, f"{sock.name} stopped at e{sock.cursor} of e{total}"
        assert sock.violations == [], sock.violations
    for store in store_ids:
        stored, head = stored_events(fault_database, store)
        assert head == total == database_head(fault_database, store)
        assert check_whole_batches(stored) == [], store
        # Every event in the table is one of this store's pushers'.
        assert {event["args"]["label"].rsplit("-pusher-", 1)[0] for event in stored} == {store}
    for node in pooled_nodes:
        assert "Traceback" not in node.log(), node.server.log_tail(80)
    observe("rejections", sum(len(record.rejections) for record in records))


def _check_output(database_url, prepared):
    environment = server_environment({"DATABASE_URL": database_url, "DATABASE_PREPARED_STATEMENTS": prepared})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_warns_when_statements_are_prepared_through_a_pooler(fault_database):
    with PgBouncer(fault_database) as bouncer:
        pooled = bouncer.url(fault_database)
        warned = _check_output(pooled, "true")
        assert warned.returncode == 0 and "syncapp.W004" in warned.stderr, warned.stderr
        assert "syncapp.W004" not in _check_output(pooled, "false").stderr
    assert "syncapp.W004" not in _check_output(fault_database, "true").stderr
