"""Redis behind Sentinel: the master is killed (SIGKILL) under two daphne processes, and Sentinel promotes its
replica, on either channels_redis layer.

One master, one replica, one Sentinel (quorum 1, the master down after 1 s of silence), all ``redis-server``
processes of the test's own. The daphne processes find the master through the Sentinel, configured as a
deployment would be: ``REDIS_SENTINELS=host:port`` and ``REDIS_SENTINEL_MASTER=name``. Pushes go on through the
failover (acknowledged, and delivered to the other process by head checks); once the replica is promoted, and a
head check (plus a margin) later, the other process hears pushes through Redis again, none from a head check
(``livesync_repairs_total`` stays still), each process has counted one outage of the master and logged that
broadcasts resumed once, and every client holds every event.
"""

import asyncio
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database
from tests.support.metrics import METRICS_SETTINGS
from tests.support.redis_servers import (
    RedisSentinel,
    RedisServer,
    latencies,
    log_count,
    metric,
    push_paced,
    repairs,
    require_redis_server,
)
from tests.support.v03_socket import Pusher, close_all, open_sockets, store_url

pytestmark = [pytest.mark.faults, pytest.mark.chaos]

HEAD_CHECK_INTERVAL = 1.0
MARGIN = 1.5
PUSHES = 10
PACE = 0.1
# How long Sentinel may take to promote the replica: its 1 s of down-after, an election and the promotion.
FAILOVER_TIMEOUT = 30


@pytest.fixture(scope="module")
def database():
    require_redis_server()
    with postgres_database() as database_url:
        yield database_url


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


@pytest.fixture
def sentinel_group(tmp_path):
    """``(master, replica, sentinel)``, the replica in sync and known to the Sentinel."""
    with RedisServer(tmp_path) as master:
        with RedisServer(tmp_path, args=("--replicaof", "127.0.0.1", master.port)) as replica:
            wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", 10, "no sync")
            with RedisSentinel(tmp_path, master) as sentinel:
                wait_until(
                    lambda: sentinel.client().execute_command("SENTINEL", "REPLICAS", sentinel.master_name),
                    15,
                    "the Sentinel did not find the replica",
                )
                yield master, replica, sentinel


@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_pushes_reach_the_other_process_through_redis_again_once_sentinel_promoted_the_replica(
    kind, sentinel_group, database, tmp_path, record_property
):
    master, replica, sentinel = sentinel_group
    settings = {
        "DATABASE_URL": database,
        "REDIS_URL": "",
        "REDIS_SENTINELS": f"127.0.0.1:{sentinel.port}",
        "REDIS_SENTINEL_MASTER": sentinel.master_name,
        "LIVESYNC_CHANNEL_LAYER": kind,
        **METRICS_SETTINGS,
    }
    servers = [DaphneServer(tmp_path / f"daphne-{name}.log", settings) for name in ("a", "b")]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda server: server.start(), servers))
    a, b = servers
    store_id = f"sentinel-{uuid.uuid4().hex[:8]}"
    sockets = await open_sockets(
        [("pusher", store_url(a.url, store_id)), ("a-reader", store_url(a.url, store_id))]
        + [("b-reader", store_url(b.url, store_id))]
    )
    pusher, _, b_reader = sockets
    record = Pusher("pusher")
    down = f"channel layer unreachable at Sentinel master '{sentinel.master_name}'"
    resumed = f"channel layer reachable again at Sentinel master '{sentinel.master_name}'"
    try:
        outages_before = [metric(server, "livesync_unavailable_total", service="channel_layer") for server in servers]
        repairs_before = repairs(b)
        baseline = await push_paced(pusher, record, PUSHES, PACE)
        assert await b_reader.wait_for_cursor(len(record.acked), 10)
        assert repairs(b) == repairs_before, "healthy pushes took a repair"

        master.kill()
        killed_at = time.monotonic()
        during = []
        while sentinel.master_port() != replica.port and time.monotonic() - killed_at < FAILOVER_TIMEOUT:
            during += await push_paced(pusher, record, 1, 0.3)
        promoted_after = time.monotonic() - killed_at
        assert sentinel.master_port() == replica.port, f"the replica was not promoted in {FAILOVER_TIMEOUT} s"
        await asyncio.sleep(HEAD_CHECK_INTERVAL + MARGIN)
        assert await b_reader.wait_for_cursor(len(record.acked), 10), f"b stopped at e{b_reader.cursor}"

        repairs_before = repairs(b)
        after = await push_paced(pusher, record, PUSHES, PACE)
        head = len(record.acked)
        for sock in sockets:
            assert await sock.wait_for_cursor(head, 10), f"{sock.name} stopped at e{sock.cursor} of e{head}"
        repaired_after = repairs(b) - repairs_before
        outages = [
            metric(server, "livesync_unavailable_total", service="channel_layer") - before
            for server, before in zip(servers, outages_before, strict=True)
        ]
    finally:
        await close_all(sockets)
        for server in servers:
            server.stop()
            print(f"--- daphne :{server.port} log (tail) ---\n{server.log_tail(40)}")

    for name, acked in (("healthy", baseline), ("failover", during), ("promoted", after)):
        values = latencies(acked, b_reader)
        note = f"p50 {statistics.median(values):.3f} s, max {max(values):.3f} s" if values else "none"
        record_property(f"b-reader latency {name}", note)
        print(f"b-reader latency {name}: {note}")
    print(f"promoted after {promoted_after:.2f} s; outages counted (a, b) {outages}; repairs after {repaired_after}")
    record_property("seconds until Sentinel promoted the replica", round(promoted_after, 2))

    for sock in sockets:
        assert sock.violations == [] and sock.seq_nums() == list(range(1, head + 1)), sock.name
    assert repaired_after == 0, "the other process heard pushes after the failover only from head checks"
    assert outages == [1, 1], "each process counts the master's outage once"
    for server in servers:
        assert log_count(server, down) == 1 and log_count(server, resumed) == 1, server.log_tail(20)
