"""Unmodified LiveStore 0.4.0 clients (``makeWsSync`` / ``makeHttpSync`` from ``@livestore/sync-cf/client``).

Each test runs one Node scenario of ``v04/`` (see ``v04/scenario.mjs`` and ``v04/scenarios/``) on a fresh storeId
against real daphne processes and asserts on what the user of each store would see: the materialized ``todos``
rows, how far the server confirmed, the order of the store's eventlog, and the typed errors the server answered
with. ``times_created`` counts how often a todo's creation was applied, so an event stored or delivered twice fails.
"""

import pytest

from tests.interop.expectations import (
    assert_same_eventlog,
    assert_synced,
    rows,
    run_mixed_generations,
    v04_client_faults,
    xfail_for_client_faults,
)

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("v04_project")]

TRANSPORTS = ["ws", "http"]


@pytest.fixture
def run_v04(v04_scenarios):
    """Runs ``v04/scenario.mjs <name>`` over ``transport`` against ``servers`` on a fresh storeId."""

    def run(name, *servers, transport="ws"):
        return v04_scenarios.run(name, servers, args=["--transport", transport])

    return run


def assert_converged(result):
    """The server's part strictly (``v04_client_faults``), and the clients' first pushes raced: some were
    answered ``ServerAheadError``."""
    faults = v04_client_faults(result)
    assert sum(store["failures"].get("ServerAheadError", 0) for store in result["stores"]) > 0
    xfail_for_client_faults(faults)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_converge_on_embedded_default(embedded_server, run_v04, transport):
    assert_converged(run_v04("converge", embedded_server, transport=transport))


def test_converge_across_two_postgres_and_redis_processes_over_ws(postgres_redis_servers, run_v04):
    first, second = postgres_redis_servers
    result = run_v04("converge", first, second)

    assert [store["server"] for store in result["stores"]] == [first.url, second.url, first.url]
    assert_converged(result)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_late_joiner_catches_up_through_pages(embedded_server, run_v04, transport):
    """A fresh store joins 1,050 events: its first pull is answered in pages whose ``remaining`` counts down."""
    result = run_v04("late-joiner", embedded_server, transport=transport)

    seeded = result["seededTodos"]
    assert seeded == 1050
    assert result["store"]["todos"] == rows(f"seed-{n:04d}" for n in range(seeded))
    assert_synced(result["store"], seeded)
    pages = result["firstPullPages"]
    sizes = [page["events"] for page in pages]
    assert len(sizes) > 1 and max(sizes) <= 100 and sum(sizes) == seeded
    still_to_come = [seeded - sum(sizes[: i + 1]) for i in range(len(sizes))]
    expected_info = [{"_tag": "MoreKnown", "remaining": left} for left in still_to_come[:-1]] + [{"_tag": "NoMore"}]
    assert [page["pageInfo"] for page in pages] == expected_info


def test_conflicting_pushes_from_the_same_head_converge(embedded_server, run_v04):
    """Both clients push on parent e1 at once: one is accepted, the other gets ``ServerAheadError``, rebases onto
    e2 and lands as e3; both end with the same eventlog."""
    result = run_v04("conflict", embedded_server)

    assert result["sharedHead"] and result["bothPushesHeld"], result
    stores = result["stores"]
    for store in stores:
        assert store["todos"] == rows(["base", "from-client-a", "from-client-b"]), store["clientId"]
        assert_synced(store, 3)
    assert_same_eventlog(stores, 3)
    accepted, rejected = sorted(stores, key=lambda store: len(store["pushFailures"]))
    assert accepted["pushFailures"] == []
    assert rejected["pushFailures"] == [{"_tag": "ServerAheadError", "minimumExpectedNum": 2, "providedNum": 1}]
    assert stores[0]["eventlog"] == [
        "e1 v1.TodoCreated base",
        f"e2 v1.TodoCreated from-{accepted['clientId']}",
        f"e3 v1.TodoCreated from-{rejected['clientId']}",
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_store_makes_clients_drop_stale_state(embedded_server, run_v04, transport):
    """After an admin reset the running client learns of it by itself (its next pull carries the old backendId),
    wipes its local data and shuts down; restarted on its own disk it holds only what was committed after the
    reset, like a fresh client."""
    result = run_v04("reset", embedded_server, transport=transport)

    assert result["beforeReset"]["todos"] == rows(f"before-{n}" for n in range(5))
    assert_synced(result["beforeReset"], 5)
    assert result["steps"]["noticedWithoutCommitting"], result["steps"]
    assert result["shutdownReason"] == "backend-id-mismatch"
    assert result["failuresSeen"].get("BackendIdMismatchError", 0) >= 1, result["failuresSeen"]
    after_reset = rows(f"after-{n}" for n in range(3))
    for client in ("fresh", "restarted"):
        assert result[client]["todos"] == after_reset, client
        assert_synced(result[client], 3)


def test_both_client_generations_share_one_store(embedded_server, scenarios, v04_scenarios):
    """Two 0.3.1 clients (``makeCfSync``) and two 0.4.0 clients (one ws, one http) commit 20 todos each on the
    same storeId at the same time: all four end with all 80 todos, each created once."""
    run_mixed_generations(scenarios, v04_scenarios, embedded_server, scenarios.new_store_id("mixed"))
