"""Unmodified LiveStore clients (0.3.1 and 0.4.0) on stores spread over two PostgreSQL databases.

Two daphne processes share Redis, a default database and a second store
database (``LIVESYNC_STORE_DATABASE_URLS``, migrated with ``manage.py migrate
--database=stores_1`` as the README says). Clients of both generations
converge across both processes on stores in each database; the databases then
hold each store wholly in the one its storeId picks, and ``livesync_stores``
lists them all.
"""

import subprocess
import sys
from contextlib import ExitStack

import psycopg
import pytest

from syncapp.storage.placement import home
from tests.interop.expectations import (
    assert_synced,
    converge_workload_todos,
    v04_client_faults,
    xfail_for_client_faults,
)
from tests.support.daphne import REPO_ROOT, DaphneServer, server_environment
from tests.support.databases import migrate, postgres_database
from tests.support.services import REDIS_URL, require_redis

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("v04_project")]

ALIASES = ("default", "stores_1")


@pytest.fixture(scope="module")
def spread_deployment(tmp_path_factory):
    """(servers, {alias: database URL}, settings): two processes over two databases."""
    require_redis()
    directory = tmp_path_factory.mktemp("store-databases")
    with postgres_database() as default, postgres_database(migrated=False) as second, ExitStack() as running:
        settings = {"DATABASE_URL": default, "LIVESYNC_STORE_DATABASE_URLS": second, "REDIS_URL": REDIS_URL}
        migrate(default, settings, database="stores_1")
        servers = [running.enter_context(DaphneServer(directory / f"daphne-{n}.log", settings)) for n in (1, 2)]
        yield servers, dict(zip(ALIASES, (default, second), strict=True)), settings


def store_id_in(alias, name):
    number = 0
    while home(f"{name}-{number}", ALIASES) != alias:
        number += 1
    return f"{name}-{number}"


def registry(database_url):
    """``{storeId: (head, table exists)}`` as one database holds it."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT store_id, head, to_regclass('livesync.' || quote_ident(table_name)) FROM syncapp_store"
        )
        return {store_id: (head, table is not None) for store_id, head, table in rows}


def test_clients_of_both_generations_converge_on_stores_in_either_database(spread_deployment, scenarios, v04_scenarios):
    servers, databases, settings = spread_deployment
    unique = scenarios.new_store_id("spread")
    stores = {
        (generation, alias): store_id_in(alias, f"{unique}-{generation}")
        for generation in ("v03", "v04")
        for alias in ALIASES
    }
    running = {
        key: (scenarios if key[0] == "v03" else v04_scenarios).start(
            "converge", servers, store_id=store_id, args=[] if key[0] == "v03" else ["--transport", "ws"]
        )
        for key, store_id in stores.items()
    }
    faults = []
    # What each store's log holds: 195 events, or more where a 0.4.0 client pushed an event twice.
    heads = {}
    for key, scenario in running.items():
        result = scenario.result()
        if key[0] == "v04":
            faults += [f"{fault} on {key[1]}" for fault in v04_client_faults(result)]
            heads[stores[key]] = result["lateJoiner"]["upstreamHead"]
            continue
        assert result["totalEvents"] == 195, key
        for store in result["stores"]:
            assert store["todos"] == converge_workload_todos(), (key, store["clientId"])
            assert_synced(store, 195)
        heads[stores[key]] = 195

    held = {alias: registry(url) for alias, url in databases.items()}
    for (_, alias), store_id in stores.items():
        assert held[alias].get(store_id) == (heads[store_id], True), (alias, store_id)
        assert all(store_id not in held[other] for other in ALIASES if other != alias)
    with psycopg.connect(databases["default"]) as connection:
        placed = dict(connection.execute("SELECT store_id, database FROM syncapp_storeplacement"))
    assert {store_id: placed[store_id] for store_id in stores.values()} == {
        store_id: alias for (_, alias), store_id in stores.items()
    }

    listed = subprocess.run(
        [sys.executable, "manage.py", "livesync_stores"],
        cwd=REPO_ROOT,
        env=server_environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in listed[1:-1]}
    for (_, alias), store_id in stores.items():
        assert rows[store_id][1] == str(heads[store_id]) and rows[store_id][-1] == alias
    assert listed[-1] == f"4 stores, {sum(heads.values())} events"
    xfail_for_client_faults(faults)
