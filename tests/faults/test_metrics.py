"""``/metrics`` of real daphne processes on PostgreSQL + Redis, scraped before and after real traffic.

Two processes share a store. A handshake is refused, pushes are acknowledged
and one is stale, a push in one process reaches the other's socket through
Redis, and then the second process's Redis is cut: its socket gets the next
events from a head check (a repair), and its hub counts the outage. Each
family moves on the process where it happened; a scrape without the token is
refused. Events committed by ``manage.py livesync_commit``, a process nobody
scrapes, are counted on the server processes' ``/metrics``, once.
"""

import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daphne import REPO_ROOT, server_environment
from tests.support.v03_socket import close_all, make_batch, open_sockets

pytestmark = pytest.mark.faults

TOKEN = "metrics-test-token-0123456789"


def scrape(node, token=TOKEN):
    """``(status, {(name, labels): value})`` of one process's ``/metrics``."""
    request = urllib.request.Request(f"{node.server.http_url}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, {}
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return 200, samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_each_family_moves_with_real_traffic_and_a_scrape_without_the_token_is_refused(nodes, store_id):
    a, b = nodes(2, settings={"LIVESYNC_METRICS_TOKEN": TOKEN})
    assert scrape(a, token=None)[0] == 401 and scrape(a, token="wrong-token-0123456789")[0] == 401
    _, a_before = scrape(a)
    _, b_before = scrape(b)

    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{a.server.url}/websocket?storeId=", proxy=None)
    pusher, a_reader = await open_sockets([("pusher", a.url(store_id)), ("a-reader", a.url(store_id))])
    (b_reader,) = await open_sockets([("b-reader", b.url(store_id))])
    _, a_during = scrape(a)
    for number in range(3):
        assert (await pusher.push(make_batch("pusher", number, 2, number * 2))).acked
    assert not (await pusher.push(make_batch("pusher", 9, 1, 0))).acked
    assert await b_reader.wait_for_cursor(6, 5)

    b.redis.cut()
    try:
        for number in range(3, 6):
            assert (await pusher.push(make_batch("pusher", number, 2, number * 2))).acked
        assert await b_reader.wait_for_cursor(12, 10)
    finally:
        b.redis.restore()
    (late,) = await open_sockets([("late-reader", a.url(store_id))])
    assert late.seq_nums() == list(range(1, 13))
    _, a_after = scrape(a)
    _, b_after = scrape(b)
    await close_all([pusher, a_reader, b_reader, late])

    def moved(before, after, name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        moved(a_before, a_after, "livesync_handshakes_total", generation="0.3", transport="ws", outcome="search_params")
        == 1
    )
    assert (
        moved(a_before, a_after, "livesync_handshakes_total", generation="0.3", transport="ws", outcome="accepted") == 3
    )
    assert value(a_during, "livesync_sockets", generation="0.3") == 2
    assert moved(a_before, a_after, "livesync_pushes_total", generation="0.3", outcome="acknowledged") == 6
    assert moved(a_before, a_after, "livesync_pushes_total", generation="0.3", outcome="stale_parent") == 1
    assert moved(a_before, a_after, "livesync_events_committed_total", origin="0.3") == 12
    assert moved(a_before, a_after, "livesync_push_seconds_count", generation="0.3") == 7
    assert moved(a_before, a_after, "livesync_commit_group_pushes_count") >= 1
    assert moved(a_before, a_after, "livesync_fanout_seconds_count", path="local") == 6
    assert moved(b_before, b_after, "livesync_fanout_seconds_count", path="remote") >= 3
    assert moved(b_before, b_after, "livesync_repairs_total", cause="head_check") >= 1
    assert moved(b_before, b_after, "livesync_unavailable_total", service="channel_layer") == 1
    assert moved(a_before, a_after, "livesync_pull_events_total", generation="0.3") == 12
    assert moved(a_before, a_after, "livesync_pull_bytes_total", generation="0.3") > 12 * 50
    assert value(a_after, "livesync_database_waiting_calls") == 0
    assert value(a_after, "process_resident_memory_bytes") > 0


# A Redis database of this test's own: what processes hand over there is taken by this test's processes only.
HANDOVER_REDIS_URL = "redis://127.0.0.1:6379/11"


def livesync_commit(database_url, store_id, seq_num):
    """``manage.py livesync_commit`` in a process of its own, configured as the servers are."""
    environment = server_environment(
        {"DATABASE_URL": database_url, "REDIS_URL": HANDOVER_REDIS_URL, "LIVESYNC_METRICS_TOKEN": TOKEN}
    )
    command = [sys.executable, "manage.py", "livesync_commit", store_id, "v1.TodoCreated", f'{{"id": "t{seq_num}"}}']
    done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"as e{seq_num}." in done.stdout, done.stderr


async def test_events_committed_by_a_command_are_counted_on_the_servers_metrics_once(nodes, store_id, fault_database):
    a, b = nodes(2, settings={"LIVESYNC_METRICS_TOKEN": TOKEN, "REDIS_URL": HANDOVER_REDIS_URL})
    (pusher,) = await open_sockets([("pusher", a.url(store_id))])
    _, a_before = scrape(a)
    _, b_before = scrape(b)
    assert (await pusher.push(make_batch("pusher", 0, 2, 0))).acked
    for seq_num in (3, 4, 5):
        livesync_commit(fault_database, store_id, seq_num)
    assert await pusher.wait_for_cursor(5, 10)
    await close_all([pusher])
    _, a_after = scrape(a)
    _, b_after = scrape(b)

    def moved(name, **labels):
        return [
            value(after, name, **labels) - value(before, name, **labels)
            for before, after in ((a_before, a_after), (b_before, b_after))
        ]

    # Taken by the first process scraped; a client's push counted by the process that took it, and only there.
    assert moved("livesync_events_committed_total", origin="python") == [3, 0]
    assert moved("livesync_events_committed_total", origin="0.3") == [2, 0]
