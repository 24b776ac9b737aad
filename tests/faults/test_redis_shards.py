"""Two Redis shards under real daphne processes: one is killed (SIGKILL) and restarted empty, as a crashed
Redis without persistence is, on either channels_redis layer; and the admin's socket counts with either down.

channels_redis keeps each group on one shard, by a hash of its name. A restarted shard forgot who is in its
groups (the core layer's keys, the pub/sub layer's subscriptions). Three processes serve a store whose group
lives on shard 0, and at least one process that only reads has its own channel on shard 1, so that nothing it
sends or receives fails during the outage. Every process must count the outage of shard 0 once, log that
broadcasts resumed once and only after the restart, and within a head check of the restart (plus a margin)
hear the next pushes through Redis again: ``livesync_repairs_total`` of the reading processes stays still,
whereas a process that never rejoined gets every event from a head check, counted as a repair.

Processes are configured as a deployment would be: ``REDIS_URL`` with both shards' URLs, comma-separated.
"""

import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.test_presence import PASSWORD, AdminPage
from tests.support.daphne import REPO_ROOT, DaphneServer, server_environment
from tests.support.databases import postgres_database
from tests.support.metrics import METRICS_SETTINGS
from tests.support.redis_servers import (
    RedisServer,
    core_channel_shard,
    core_hub_channel,
    latencies,
    log_count,
    metric,
    pubsub_hub_channels,
    push_paced,
    repairs,
    require_redis_server,
    store_on,
)
from tests.support.v03_socket import Pusher, close_all, open_sockets, store_url

pytestmark = [pytest.mark.faults, pytest.mark.chaos]

# The example project's (livesync's default).
HEAD_CHECK_INTERVAL = 1.0
# Past one head-check interval after the restart: for the watch to find the shard back and join its groups,
# and on the pub/sub layer for redis-py to subscribe again (channels_redis retries its receive every second).
MARGIN = 1.5
OUTAGE_SECONDS = 5
PUSHES = 10
PACE = 0.1


@pytest.fixture(scope="module")
def database():
    require_redis_server()
    with postgres_database() as database_url:
        yield database_url


@pytest.fixture
def shards(tmp_path):
    with RedisServer(tmp_path) as first, RedisServer(tmp_path) as second:
        yield first, second


@pytest.fixture
def processes(database, shards, tmp_path, record_property):
    """``start(count, kind)``: daphne processes on PostgreSQL and both shards, started at once.

    Every process is stopped after the test, and its log's tail printed (pytest shows it if the test failed).
    """
    started = []

    def start(count, kind):
        settings = {
            "DATABASE_URL": database,
            "REDIS_URL": ",".join(shard.url for shard in shards),
            "REDIS_SENTINELS": "",
            "LIVESYNC_CHANNEL_LAYER": kind,
            **METRICS_SETTINGS,
        }
        batch = [DaphneServer(tmp_path / f"daphne-p{len(started) + n}.log", settings) for n in range(count)]
        started.extend(batch)
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda server: server.start(), batch))
        return batch

    yield start
    for server in started:
        if server.returncode is None and server.pid is not None:
            server.stop()
        print(f"--- daphne :{server.port} log (tail) ---\n{server.log_tail(40)}")


def note(record_property, key, value):
    record_property(key, value)
    print(f"{key}: {value}")


async def hub_shard(kind, server, shards):
    """The shard of ``server``'s hub channel. The hub starts with this function's socket: call it first."""
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    subscribed = [set(pubsub_hub_channels(shard)) for shard in shards]
    (sock,) = await open_sockets([("marker", store_url(server.url, marker))], pull=False)
    try:
        if kind == "core":
            return core_channel_shard(core_hub_channel(marker, shards), len(shards))
        (shard,) = [index for index, shard in enumerate(shards) if set(pubsub_hub_channels(shard)) - subscribed[index]]
        return shard
    finally:
        await close_all([sock])


async def put_a_reader_on_shard_1(kind, servers, shards):
    """Restart the last process until a process that only reads (not ``servers[0]``) has its channel on shard 1.

    Returns the shard of each process's hub channel.
    """
    placed = [await hub_shard(kind, server, shards) for server in servers]
    for _ in range(20):
        if 1 in placed[1:]:
            return placed
        servers[-1].stop()
        servers[-1].start()
        placed[-1] = await hub_shard(kind, servers[-1], shards)
    raise AssertionError(f"no reading process's channel landed on shard 1: {placed}")


async def wait_for_logs(servers, text, timeout):
    """Seconds until each process logged ``text`` (None: not within ``timeout``)."""
    started = time.monotonic()
    seconds = [None] * len(servers)
    while None in seconds and time.monotonic() - started < timeout:
        for index, server in enumerate(servers):
            if seconds[index] is None and log_count(server, text):
                seconds[index] = round(time.monotonic() - started, 3)
        await asyncio.sleep(0.05)
    return seconds


def summary(values):
    return f"p50 {statistics.median(values):.3f} s, max {max(values):.3f} s"


@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_every_process_hears_pushes_through_a_restarted_shard_again_within_a_head_check(
    kind, processes, shards, record_property
):
    servers = processes(3, kind)
    placed = await put_a_reader_on_shard_1(kind, servers, shards)
    note(record_property, "hub channel shard of p0 (pusher), p1, p2", placed)
    first, second = shards
    store_id = store_on(kind, 0, f"restarted-shard-{uuid.uuid4().hex[:8]}")
    pusher, *readers = await open_sockets(
        [("pusher", store_url(servers[0].url, store_id))]
        + [(f"p{index}-reader", store_url(server.url, store_id)) for index, server in enumerate(servers)]
    )
    remote_readers, remote_servers = readers[1:], servers[1:]
    record = Pusher("pusher")
    down_at, up_at = f"channel layer unreachable at 127.0.0.1:{first.port}", f"at 127.0.0.1:{second.port}"
    resumed = f"channel layer reachable again at 127.0.0.1:{first.port}"
    outages_before = [metric(server, "livesync_unavailable_total", service="channel_layer") for server in servers]
    try:
        # Healthy: what a push across processes takes through Redis here, now.
        repairs_before = [repairs(server) for server in remote_servers]
        baseline = await push_paced(pusher, record, PUSHES, PACE)
        for reader in readers:
            assert await reader.wait_for_cursor(record_head(record), 10), f"{reader.name} stopped at e{reader.cursor}"
        assert [repairs(server) for server in remote_servers] == repairs_before, "healthy pushes took a repair"

        first.kill()
        killed_at = time.monotonic()
        during = await push_paced(pusher, record, PUSHES // 2, OUTAGE_SECONDS / PUSHES)
        await asyncio.sleep(max(0.0, killed_at + OUTAGE_SECONDS - time.monotonic()))
        resumed_before_restart = [log_count(server, resumed) for server in servers]
        first.start()
        recovered = await wait_for_logs(servers, resumed, HEAD_CHECK_INTERVAL + MARGIN)
        for reader in readers:
            assert await reader.wait_for_cursor(record_head(record), 10), f"{reader.name} stopped at e{reader.cursor}"
        await asyncio.sleep(max(0.0, killed_at + OUTAGE_SECONDS + HEAD_CHECK_INTERVAL + MARGIN - time.monotonic()))

        # Back: the next pushes reach every process through Redis, none from a head check.
        repairs_before = [repairs(server) for server in remote_servers]
        after = await push_paced(pusher, record, PUSHES, PACE)
        head = record_head(record)
        for reader in readers:
            assert await reader.wait_for_cursor(head, 10), f"{reader.name} stopped at e{reader.cursor} of e{head}"
        repaired_after = [repairs(server) - count for server, count in zip(remote_servers, repairs_before, strict=True)]
        outages = [
            metric(server, "livesync_unavailable_total", service="channel_layer") - before
            for server, before in zip(servers, outages_before, strict=True)
        ]
    finally:
        await close_all([pusher, *readers])

    for reader in remote_readers:
        note(record_property, f"{reader.name} latency healthy", summary(latencies(baseline, reader)))
        note(record_property, f"{reader.name} latency shard down", summary(latencies(during, reader)))
        note(record_property, f"{reader.name} latency restarted", summary(latencies(after, reader)))
    note(record_property, "seconds from restart to 'broadcasts resumed' (p0, p1, p2)", recovered)
    note(record_property, "repairs after the restart (p1, p2)", repaired_after)
    note(record_property, "outages counted (p0, p1, p2)", outages)

    for reader in readers:
        assert reader.violations == [] and reader.seq_nums() == list(range(1, head + 1)), reader.name
    assert repaired_after == [0, 0], "a process heard pushes after the restart only from head checks"
    assert outages == [1, 1, 1], "each process counts the shard's outage once"
    assert resumed_before_restart == [0, 0, 0], "'broadcasts resumed' logged while the shard was down"
    for server in servers:
        assert log_count(server, down_at) == 1 and log_count(server, resumed) == 1, server.log_tail(20)
        assert log_count(server, up_at) == 0, "the shard that stayed up was reported"


def record_head(record):
    return max(last for _, last, _ in record.acked.values())


async def test_the_admin_counts_every_processs_sockets_with_either_shard_down(
    processes, shards, database, record_property
):
    a, b = processes(2, "pubsub")
    username = f"admin-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput", f"--username={username}", "--email=a@a.example"],
        cwd=REPO_ROOT,
        env=server_environment({"DATABASE_URL": database, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}),
        check=True,
        capture_output=True,
        timeout=120,
    )
    store_id = f"presence-{uuid.uuid4().hex[:8]}"
    sockets = await open_sockets(
        [(f"{name}-{n}", store_url(server.url, store_id)) for name, server in (("a", a), ("b", b)) for n in (1, 2)]
    )
    try:
        await push_paced(sockets[0], Pusher("a-1"), 1, 0)
        admin = await asyncio.to_thread(AdminPage, a.http_url, username)
        deadline = time.monotonic() + 5
        while await asyncio.to_thread(admin.sockets, store_id) != "4" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for down in shards:
            down.kill()
            # Two head checks and more: long enough for any process's counts there to be missed.
            readings, until = [], time.monotonic() + 2 * HEAD_CHECK_INTERVAL + MARGIN
            while time.monotonic() < until:
                readings.append(await asyncio.to_thread(admin.sockets, store_id))
                await asyncio.sleep(0.2)
            note(record_property, f"admin readings with :{down.port} down", sorted(set(readings)))
            assert set(readings) == {"4"}, f"the admin lost counts with :{down.port} down: {readings}"
            down.start()
            # The processes write their counts on the restarted shard at their next head check.
            await asyncio.sleep(HEAD_CHECK_INTERVAL + MARGIN)
    finally:
        await close_all(sockets)
