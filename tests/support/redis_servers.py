"""Redis servers and Sentinels of a test's own, on free ports, to kill and restart like a crashed shard.

The machine's Redis (``tests.support.services.REDIS_URL``) is shared by every test and must never go down;
these are ``redis-server`` processes (Debian's binary, which is also Sentinel) started for one test. They keep
nothing on disk (``--save "" --appendonly no``), so a restarted server has forgotten every key and subscription,
as a crashed shard without persistence has::

    with RedisServer(tmp_path) as shard:
        settings = {"REDIS_URL": shard.url}
        ...
        shard.kill()      # SIGKILL
        shard.start()     # the same port, empty, with a new run_id

Without ``redis-server`` on the PATH the calling test is skipped (under ``CI=true`` it fails).
"""

import asyncio
import os
import shutil
import signal
import subprocess
import time

import pytest
import redis
from channels_redis.utils import _consistent_hash

from syncapp.fanout.messages import group_name
from tests.support import metrics
from tests.support.daphne import free_port
from tests.support.v03_socket import push_batches

READY_TIMEOUT = 10.0


def require_redis_server():
    """Skip (or, under CI, fail) the calling test unless ``redis-server`` can be started."""
    if shutil.which("redis-server"):
        return
    message = "redis-server is not on the PATH"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must run the Redis shard and Sentinel tests", pytrace=False)
    pytest.skip(f"{message}: Redis shard and Sentinel tests skipped")


class RedisServer:
    """``redis-server`` on 127.0.0.1 and a port of its own; ``args`` are extra options (``--replicaof …``)."""

    def __init__(self, directory, port=None, args=(), name=None):
        require_redis_server()
        self.port = port or free_port()
        self.name = name or f"redis-{self.port}"
        self.directory = directory / self.name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.args = tuple(str(arg) for arg in args)
        self.log_path = self.directory / "server.log"
        self._process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self):
        return [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            *self.args,
        ]  # fmt: skip

    def start(self):
        """Start the server (again, on the same port) and return once it answers PING."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_ready()
        return self

    @property
    def running(self):
        return self._process is not None and self._process.poll() is None

    def kill(self):
        """SIGKILL: the server is gone at once, its connections reset, its data lost."""
        if self.running:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def run_id(self):
        with self.client() as client:
            return client.info("server")["run_id"]

    def log_tail(self, lines=40):
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_until_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except redis.RedisError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer PING within {READY_TIMEOUT} s:\n{self.log_tail()}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.kill()


class RedisSentinel(RedisServer):
    """``redis-server <conf> --sentinel`` watching ``master`` as ``master_name``, with a quorum of 1.

    ``down_after_ms`` is how long the master may stay silent before the Sentinel fails it over. The Sentinel
    rewrites its configuration file as it learns, so the file lives in the Sentinel's own directory.
    """

    def __init__(self, directory, master, master_name="livesync", down_after_ms=1000, failover_timeout_ms=5000):
        self.master = master
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        super().__init__(directory, name=f"sentinel-{free_port()}")

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    def command(self):
        config = self.directory / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self.directory}",
                    f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 1",
                    f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
                    f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {self.master_name} 1",
                    "",
                ]
            )
        )
        return ["redis-server", str(config), "--sentinel"]

    def master_port(self):
        """The port of the server this Sentinel names as the master now."""
        with self.client() as client:
            return int(client.execute_command("SENTINEL", "get-master-addr-by-name", self.master_name)[1])


# Where channels_redis puts a store's group and a hub's channel, with its default prefix ("asgi").


def group_shard(kind, store_id, hosts=2):
    """The host (index) the channels_redis layer ``kind`` ("core" or "pubsub") keeps ``store_id``'s group on."""
    group = group_name(store_id)
    return _consistent_hash(f"asgi__group__{group}" if kind == "pubsub" else group, hosts)


def store_on(kind, shard, name, hosts=2):
    """A storeId starting with ``name`` whose group the layer ``kind`` keeps on host ``shard``."""
    for number in range(1000):
        store_id = f"{name}-{number}"
        if group_shard(kind, store_id, hosts) == shard:
            return store_id
    raise AssertionError(f"no storeId hashed to host {shard}")


def core_hub_channel(store_id, shards):
    """With the core layer, the hub channel of the one process serving ``store_id``: its group's one member."""
    with shards[group_shard("core", store_id, len(shards))].client() as client:
        members = client.zrange(f"asgi:group:{group_name(store_id)}", 0, -1)
    assert len(members) == 1, f"{len(members)} processes joined the group of {store_id!r}"
    return members[0].decode()


def core_channel_shard(channel, hosts=2):
    """The host of a core-layer channel ``<prefix>.<client prefix>!<id>``: placed by its part up to "!"."""
    return _consistent_hash(channel[: channel.index("!") + 1], hosts)


def pubsub_hub_channels(server):
    """The hubs' channels subscribed on ``server`` with the pub/sub layer."""
    with server.client() as client:
        return client.pubsub_channels("asgilivesync.hub.*")


# What the daphne processes serving on these servers did, for the chaos tests.


def metric(daphne, name, **labels):
    """A sample of a daphne process's ``/metrics`` (started with ``tests.support.metrics.METRICS_SETTINGS``)."""
    return metrics.metric(daphne.http_url, name, **labels)


def repairs(daphne):
    """Subscribers of the process that caught up from storage rather than from a broadcast, either cause."""
    return sum(metric(daphne, "livesync_repairs_total", cause=cause) for cause in ("gap", "head_check"))


def log_count(daphne, text):
    return daphne.log_path.read_text(errors="replace").count(text) if daphne.log_path.exists() else 0


async def push_paced(sock, record, count, pace):
    """Push ``count`` one-event batches from ``sock``, ``pace`` seconds apart, continuing ``record`` (a
    ``Pusher``); returns ``[(seqNum, ack time)]`` of these."""
    acked = []
    for _ in range(count):
        number = len(record.acked)
        await push_batches(sock, record.label, 1, 1, pusher=record, start=number)
        _, last, ack_time = record.acked[(record.label, number)]
        acked.append((last, ack_time))
        await asyncio.sleep(pace)
    return acked


def latencies(acked, reader):
    """Seconds from each push's acknowledgement to ``reader`` receiving its event."""
    return [reader.received_at[seq_num] - ack_time for seq_num, ack_time in acked]
