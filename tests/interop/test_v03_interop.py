"""Unmodified LiveStore 0.3.1 clients (``@livestore/adapter-node`` + ``makeCfSync``) against real livesync servers.

Each test runs one Node scenario (see ``scenario.mjs`` and ``scenarios/``) on a fresh storeId and asserts on
what the user of each store would see: the materialized ``todos`` rows, plus how far the server confirmed.
``times_created`` counts how often a todo's creation was applied, so an event stored or delivered twice fails.
"""

import pytest

from tests.interop.expectations import assert_synced, converge_workload_todos, rows

pytestmark = pytest.mark.interop

PARENT_ERROR = "Invalid parent event number. Received e{parent} but expected e{head}"


def assert_converged(result):
    expected = converge_workload_todos()
    assert result["totalEvents"] == 195
    for store in result["stores"]:
        assert store["todos"] == expected, store["clientId"]
        assert_synced(store, 195)


def test_converge_on_embedded_default(embedded_server, run_scenario):
    assert_converged(run_scenario("converge", embedded_server))


def test_converge_on_postgres_and_redis(postgres_redis_servers, run_scenario):
    assert_converged(run_scenario("converge", postgres_redis_servers[0]))


def test_two_server_processes_converge(postgres_redis_servers, run_scenario):
    first, second = postgres_redis_servers
    result = run_scenario("converge", first, second)

    assert [store["url"] for store in result["stores"]] == [first.url, second.url, first.url]
    assert_converged(result)


def test_late_joiner_catches_up_through_chunked_pull(embedded_server, run_scenario):
    """A fresh store joins 1,050 events: its one pull is answered in chunks whose ``remaining`` counts down."""
    result = run_scenario("late-joiner", embedded_server)

    seeded = result["seededTodos"]
    assert seeded == 1050
    assert result["store"]["todos"] == rows(f"seed-{n:04d}" for n in range(seeded))
    assert_synced(result["store"], seeded)
    chunk_sizes = [answer["events"] for answer in result["pullAnswers"]]
    assert len(chunk_sizes) > 1 and max(chunk_sizes) <= 100
    assert sum(chunk_sizes) == seeded
    still_to_come = [seeded - sum(chunk_sizes[: i + 1]) for i in range(len(chunk_sizes))]
    assert [answer["remaining"] for answer in result["pullAnswers"]] == still_to_come


def test_offline_writer_gets_every_event_after_reconnecting(embedded_server, run_scenario):
    """Client A is cut off while all three clients commit; A reconnects by itself and pushes what it committed.

    The 0.3.1 client does not pull after reconnecting, so A's first push carries its stale parent (e15 while the
    server is at e25). livesync answers with the ten events A missed before the rejection; A rebases and retries.
    Every store ends with all 45 todos, each created once, and the server holds exactly 45 events.
    """
    result = run_scenario("offline-writer", embedded_server)

    clients = ("client-a", "client-b", "client-c")
    phases = ("before", "offline", "after")
    expected = rows(f"{client}-{phase}-{n}" for client in clients for phase in phases for n in range(5))
    for store in result["stores"]:
        assert store["todos"] == expected, store["clientId"]
        assert_synced(store, 45)
    assert all(result["steps"].values()), result["steps"]
    offline_client = result["offlineClient"]
    assert offline_client["connectionsOpened"] == 2
    assert offline_client["firstPushAfterReconnect"] == {
        "parentSeqNum": 15,
        "answer": PARENT_ERROR.format(parent=15, head=25),
    }
    # Over its new connection A was sent every event after its stale head once, in order, its own included.
    assert offline_client["eventsReceivedAfterReconnect"] == list(range(16, 46))


def test_offline_reader_is_sent_nothing_until_it_pushes_then_everything(embedded_server, run_scenario):
    """The 0.3.1 client's reconnect gap, closed on the server.

    In ``@livestore/sync-cf`` 0.3.1 ``ws-impl.ts``, ``pull`` sends its ``PullReq`` once per sync backend, and
    ``connect`` reconnects (``Effect.forever`` around ``makeWebSocket``) without pulling again. A batch sent to
    the reconnected reader would be taken as the next one and the five events committed while it was away
    skipped for good. livesync sends that socket nothing until the client says where it stands: while it only
    reads, it keeps what it had; its first push (on its stale parent) brings it every event it missed.
    """
    result = run_scenario("offline-reader", embedded_server)

    everything = [f"writer-{phase}-{n}" for phase in ("before", "offline", "after") for n in range(5)]
    assert all(result["steps"].values()), result["steps"]
    assert result["readerWhileReading"]["todos"] == rows(everything[:5])
    assert_synced(result["readerWhileReading"], 5)
    assert "WSMessage.PullRes" not in result["framesBeforeItsPush"]
    for store in (result["reader"], result["writer"]):
        assert store["todos"] == rows([*everything, "reader-0"]), store["clientId"]
        assert_synced(store, 16)
    assert result["readerWire"] == {
        "connectionsOpened": 2,
        "pullRequestsPerConnection": [1, 0],
        "pushesSent": 2,
        "errorsReceived": 1,
    }


def test_conflicting_pushes_from_the_same_head_converge(embedded_server, run_scenario):
    """Both clients push on parent e1 at once: one is accepted, the other rejected, rebased and retried."""
    result = run_scenario("conflict", embedded_server)

    for store in result["stores"]:
        assert store["todos"] == rows(["base", "from-client-a", "from-client-b"]), store["clientId"]
        assert_synced(store, 3)
    assert result["sharedHead"] and result["bothPushesHeld"], result
    rejections = sorted((store["pushRejections"] for store in result["stores"]), key=len)
    assert rejections == [[], [PARENT_ERROR.format(parent=1, head=2)]]


def test_wrong_auth_token_never_receives_data(auth_server, run_scenario):
    """Two members use the server's token; the intruder's ``wrong`` token is refused before the upgrade."""
    result = run_scenario("auth", auth_server)

    for member in result["members"]:
        assert member["todos"] == rows(f"member-{n}" for n in range(5)), member["clientId"]
        assert_synced(member, 5)
    assert result["intruder"]["todos"] == rows(["intruder-0"])
    assert result["intruder"]["upstreamHead"] == 0
    assert result["intruderWire"] == {"connectionsOpened": 0, "framesReceived": 0}
