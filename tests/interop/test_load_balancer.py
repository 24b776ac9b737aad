"""Real LiveStore 0.3.1 clients behind nginx (``deploy/nginx.conf``) over four daphne processes, one of them
SIGKILLed while the clients push.

The 0.3.1 client reconnects without a new ``PullReq``, so nothing tells the process it lands on where it
stands until its next push. A batch sent to it before then could start past its head: it would take the
batch and skip the events in between for good, while reporting itself in sync. livesync sends a socket no
batch until its client pulls or pushes, and then the contiguous events from the position that says.
"""

import time
from contextlib import ExitStack

import pytest

from tests.interop.conftest import AUTH_TOKEN
from tests.support.cluster import database_head, stored_events
from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database
from tests.support.gateways import LoadBalancer
from tests.support.metrics import METRICS_SETTINGS, metric_total
from tests.support.services import REDIS_URL, require_redis

pytestmark = [pytest.mark.interop, pytest.mark.faults, pytest.mark.chaos]

PROCESSES = 4
CLIENTS = 6
TODOS_PER_CLIENT = 150
SCENARIO_TIMEOUT_S = 180
# The kill comes once this share of the events is stored: the clients are in the middle of pushing.
KILL_AT = 0.3


@pytest.fixture
def balanced_cluster(tmp_path, request):
    """Four daphne processes on PostgreSQL + Redis behind nginx; returns ``(balancer, servers, database_url)``."""
    require_redis()
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        settings = {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "LIVESYNC_AUTH_TOKEN": AUTH_TOKEN,
            **METRICS_SETTINGS,
        }
        servers = [DaphneServer(tmp_path / f"daphne-{n}.log", settings) for n in range(PROCESSES)]
        for server in servers:
            stack.enter_context(server)
        balancer = stack.enter_context(LoadBalancer(tmp_path, [server.port for server in servers]))
        request.node.interop_logs = {}
        yield balancer, servers, database_url
        for server in servers:
            request.node.interop_logs[f"daphne :{server.port} log (tail)"] = server.log_tail()
        request.node.interop_logs["nginx error log (tail)"] = balancer.log_tail()


def sockets_served(server):
    """The sync sockets ``server`` holds, from its own metrics."""
    return metric_total(server.http_url, "livesync_sockets")


def wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def settled_head(database_url, store_id, quiet=5.0, clients_done=None):
    """The store's head once it has not moved for ``quiet`` seconds, after ``clients_done()`` (if given) is true.

    A quiet head alone does not say that the clients which can push are done: on a loaded machine a client whose
    pushes were rejected can take seconds to rebase its pending events, and the others would stop waiting for
    events still to come. A scenario that can tell gives ``clients_done``.
    """
    if clients_done is not None:
        assert wait_until(clients_done, SCENARIO_TIMEOUT_S), "a client never finished pushing"
    head, since = database_head(database_url, store_id), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.2)
        if (now := database_head(database_url, store_id)) != head:
            head, since = now, time.monotonic()
    return head


def todo_ids(events):
    return {event["args"]["id"] for event in events}


def own_todo_ids(client_id):
    return {f"{client_id}-{todo:03d}" for todo in range(TODOS_PER_CLIENT)}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("round_number", [1, 2])
def test_no_client_skips_an_event_after_a_process_behind_nginx_is_killed(
    balanced_cluster, scenarios, tmp_path, round_number
):
    """Every client ends with every stored event, in order and once, or stays behind without skipping any: if its
    push was in flight on the killed process (visibly: the push unanswered, its events pending), or if it had
    pushed everything before the kill and only read since (it is sent nothing until it pushes again).

    That second case is the 0.3.1 client's own limit: it waits for its push's answer without a deadline and
    sends nothing else that says where it stands, so no server can tell which new socket is that client.
    """
    balancer, servers, database_url = balanced_cluster
    store_id = scenarios.new_store_id(f"crowd-{round_number}")
    total = CLIENTS * TODOS_PER_CLIENT
    start_file, report_file = tmp_path / f"start-{round_number}", tmp_path / f"report-{round_number}"
    # One Node process per client: each LiveStore client's databases live in its process's WebAssembly heap.
    running = [
        scenarios.start(
            "crowd",
            [balancer],
            store_id=store_id,
            # Six Node processes beside four daphne processes on two cores: they start and run slowly.
            timeout_s=SCENARIO_TIMEOUT_S,
            args=[
                *("--first-client", str(client), "--todos-per-client", str(TODOS_PER_CLIENT)),
                *("--total-events", str(total), "--start-file", str(start_file), "--report-file", str(report_file)),
            ],
        )
        for client in range(CLIENTS)
    ]
    assert wait_until(lambda: sum(map(sockets_served, servers)) == CLIENTS, 60), "the clients never connected"
    start_file.touch()
    assert wait_until(lambda: database_head(database_url, store_id) >= total * KILL_AT, 60), "no client pushed"
    busiest = max(servers, key=sockets_served)
    killed_sockets = sockets_served(busiest)
    busiest.kill()
    # Each client keeps ``<report file>.<clientId>`` saying whether it can push anything more.
    statuses = [report_file.with_name(f"{report_file.name}.client-{client:02d}") for client in range(CLIENTS)]

    def clients_done():
        return all(path.exists() and path.read_text() == "true" for path in statuses)

    report_file.write_text(str(settled_head(database_url, store_id, quiet=2.0, clients_done=clients_done)))
    stores = [store for scenario in running for store in scenario.result()["stores"]]

    summaries = [{key: value for key, value in store.items() if key != "todoIds"} for store in stores]
    print("stores:", *summaries, sep="\n")
    for server in servers:
        if server is not busiest:
            families = (
                "livesync_repairs_total",
                "livesync_broadcasts_kept_local_total",
                "livesync_fanout_seconds_count",
            )
            print(f"daphne :{server.port}", {name: metric_total(server.http_url, name) for name in families})
    stored, head = stored_events(database_url, store_id)
    assert [event["seqNum"] for event in stored] == list(range(1, head + 1))
    assert killed_sockets > 0 and any(store["connectionsOpened"] > 1 for store in stores), summaries
    stuck = [store for store in stores if store["pending"]]
    for store, summary in zip(stores, summaries, strict=True):
        assert store["gapsReceived"] == [], summary
        assert store["timesCreated"] == 1, summary
        if store in stuck:
            # Its last push went to the killed process and was never answered; it has waited for it since.
            lost = store["unansweredPushes"][-1]
            assert lost["connection"] < store["connectionsOpened"], summary
            assert store["upstreamHead"] == lost["parentSeqNum"], summary
            expected = todo_ids(stored[: store["upstreamHead"]]) | own_todo_ids(store["clientId"])
        elif store["connectionsOpened"] > 1 and not store["pushesAfterReconnecting"]:
            # It had pushed all it had before the kill, and only read since: it was sent nothing, and holds
            # exactly what it had (the README's rule), its own todos among them.
            expected = todo_ids(stored[: store["upstreamHead"]])
            assert own_todo_ids(store["clientId"]) <= expected and store["lastBatches"][-1][0] == 1, summary
        else:
            expected = todo_ids(stored)
            assert (store["upstreamHead"], store["pending"]) == (head, 0), summary
        assert store["todoIds"] == sorted(expected), summary
    # Every event of a client whose pushes were all answered is stored; only a lost push's events may be missing.
    answered = [own_todo_ids(store["clientId"]) for store in stores if store not in stuck]
    assert todo_ids(stored) >= set().union(*answered)
    print(f"round {round_number}: {len(stuck)} client(s) lost a push in the killed process; head {head} of {total}")
