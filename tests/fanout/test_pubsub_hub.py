"""The hub on channels_redis's pub/sub layer (``LIVESYNC_CHANNEL_LAYER=pubsub``), whose two gaps it closes itself,
and on several Redis hosts, of either layer.

The layer never reports an outage to a process that only receives, and it queues messages for a channel
without limit. Both are checked against the real Redis, through a proxy that can be cut like a network. With
two hosts (Redis servers of the test's own, killed and restarted), a hub watches each host: it rejoins its
groups on one that restarted, and an outage of one host is one outage of that host alone.
"""

import asyncio

import prometheus_client
import pytest
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer
from channels_redis.utils import _consistent_hash
from django.core.exceptions import ImproperlyConfigured

from livesync_project.settings import redis_channel_layer, redis_hosts
from syncapp.fanout import hub as hub_module
from syncapp.fanout import layer_redis, presence, publisher
from tests.support.proxy import TcpProxy
from tests.support.redis_servers import RedisSentinel, RedisServer
from tests.support.services import REDIS_URL, require_redis

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    def __init__(self):
        self.messages = []

    async def offer(self, message):
        self.messages.append(message)


@pytest.fixture
def pubsub_hub(settings):
    """A hub on the pub/sub layer, with Redis behind a proxy the test can cut."""
    require_redis()
    with TcpProxy.for_url(REDIS_URL) as proxy:
        settings.CHANNEL_LAYERS = {"default": redis_channel_layer(proxy.rewrite(REDIS_URL), "pubsub")}
        settings.LIVESYNC = {"HEAD_CHECK_INTERVAL": 3600}
        channel_layers.backends.clear()
        yield hub_module.Hub(), proxy
    channel_layers.backends.clear()


async def until(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return condition()


def logged(caplog, text):
    return sum(text in record.getMessage() for record in caplog.records)


def down(hub):
    return any(shard.down for shard in hub.shards)


async def test_a_receive_only_process_learns_of_a_pubsub_outage_and_rejoins(pubsub_hub, caplog, store_id):
    hub, proxy = pubsub_hub
    member = Recorder()
    await hub.join(store_id, member)
    try:
        proxy.cut()
        for _ in range(3):
            await hub.hosts.watch()
        assert down(hub)
        assert logged(caplog, "channel layer unreachable") == 1
        proxy.restore()
        assert await rejoin(hub), "the hub did not come back once Redis answered"
        assert logged(caplog, "channel layer reachable again") == 1
        message = {"type": "livesync.events", "first": 1, "last": 1, "store_id": store_id, "origin": "other"}
        for _ in range(50):
            await hub.layer.group_send(hub_module.messages.group_name(store_id), message)
            if await until(lambda: member.messages, timeout=0.2):
                break
        assert member.messages, "no broadcast reached the hub after the outage"
    finally:
        await hub.stop()


async def rejoin(hub, attempts=50):
    """What the hub's watch does once per head check, until every host is back and joined (True) or attempts
    run out."""
    for _ in range(attempts):
        await hub.hosts.watch()
        if all(shard.joined and not shard.down for shard in hub.shards):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_hub_far_behind_on_the_pubsub_layer_drops_its_backlog_and_repairs_from_storage(
    pubsub_hub, monkeypatch, caplog, store_id
):
    hub, _ = pubsub_hub
    monkeypatch.setattr(hub_module, "INBOUND_LIMIT", 5)
    member = Recorder()
    await hub.join(store_id, member)
    try:
        assert hub._inbound is not None, "the pub/sub layer's queue for the hub was not found"
        for index in range(20):
            hub._inbound.put_nowait({"type": "livesync.events", "first": index, "last": index, "store_id": store_id})
        hub._bound_inbound_backlog()
        assert hub._inbound.qsize() == 0
        assert store_id in hub.repairs_wanted
        assert any("dropped 20 store messages" in r.getMessage() for r in caplog.records)
    finally:
        await hub.stop()


async def test_a_hub_started_while_redis_is_down_serves_sockets_and_subscribes_once_it_returns(
    pubsub_hub, caplog, store_id
):
    hub, proxy = pubsub_hub
    member = Recorder()
    proxy.cut()
    await hub.join(store_id, member)
    try:
        await hub.hosts.watch()
        assert down(hub) and hub.channel_name is None
        assert hub.socket_count(store_id) == 1
        await hub.publish(store_id, {"type": "livesync.events", "first": 1, "last": 1})
        assert [message["last"] for message in member.messages] == [1], "local sockets must be served meanwhile"
        proxy.restore()
        assert await rejoin(hub), "the hub did not subscribe once Redis answered"
        assert hub.channel_name is not None and not down(hub)
        message = {"type": "livesync.events", "first": 2, "last": 2, "store_id": store_id, "origin": "other"}
        for _ in range(50):
            await hub.layer.group_send(hub_module.messages.group_name(store_id), message)
            if await until(lambda: len(member.messages) > 1, timeout=0.2):
                break
        assert member.messages[-1]["last"] == 2, "no broadcast reached the hub once Redis was back"
    finally:
        await hub.stop()


def recording(publish, batches):
    """``publish``, recording each batch's store messages as ``(type, last event or head)`` in ``batches`` (follow
    notices not)."""

    async def recorded(addressed, shard):
        sent = [(message["type"], message.get("last", message.get("head"))) for _, message in addressed]
        sent = [(kind, last) for kind, last in sent if kind != hub_module.messages.FOLLOW]
        if sent:
            batches.append(sent)
        return await publish(addressed, shard)

    return recorded


def another_process():
    """A hub with a channel layer of its own: its own connections to Redis, as in another process."""
    return hub_module.Hub(channel_layers.make_backend("default"))


@pytest.fixture
async def two_processes(pubsub_hub, store_id):
    """The pub/sub hub and another process's hub, each with a socket of ``store_id``; every batch the first sends
    to Redis is recorded as its messages' ``(type, last)``. Yields (hub, local socket, remote socket, batches)."""
    hub, _ = pubsub_hub
    other_process = another_process()
    local, remote = Recorder(), Recorder()
    await hub.join(store_id, local)
    await other_process.join(store_id, remote)
    batches = []
    publish = hub._publisher.publish

    hub._publisher.publish = recording(publish, batches)
    yield hub, local, remote, batches
    await other_process.stop()
    await hub.stop()


async def test_messages_published_while_redis_answers_go_together_and_reach_another_process_in_order(
    two_processes, store_id
):
    """A burst of pushes reaches another process's sockets whole and in order, in fewer round trips than pushes."""
    hub, local, remote, batches = two_processes
    for seq_num in range(1, 201):
        await hub.publish(store_id, {"type": "livesync.events", "first": seq_num, "last": seq_num})
    assert [message["last"] for message in local.messages] == list(range(1, 201))
    assert await until(lambda: len(remote.messages) >= 200), f"{len(remote.messages)} of 200 arrived"
    assert [message["last"] for message in remote.messages] == list(range(1, 201))
    assert sum(map(len, batches)) == 200
    assert len(batches) < 200, "every message went in a round trip of its own"


async def test_a_reset_goes_to_redis_alone_and_batches_stop_at_about_a_megabyte_of_frames(two_processes, store_id):
    """A batch sent twice (its first try failed late) must never put a store's old events after its reset."""
    hub, _, remote, batches = two_processes
    frame = "x" * 400_000
    sent = [
        {"type": "livesync.events", "first": 1, "last": 1},
        {"type": "livesync.events", "first": 2, "last": 2},
        {"type": "livesync.reset"},
        {"type": "livesync.events", "first": 1, "last": 1, "v03_frames": [frame], "v04_pages": [frame]},
        {"type": "livesync.events", "first": 2, "last": 2, "v03_frames": [frame]},
        {"type": "livesync.events", "first": 3, "last": 3},
    ]
    for message in sent:
        hub._outgoing.put({**message, "store_id": store_id, "origin": hub.id})
    assert await until(lambda: len(remote.messages) >= len(sent)), f"{len(remote.messages)} arrived"
    assert [(m["type"], m.get("last")) for m in remote.messages] == [(m["type"], m.get("last")) for m in sent]
    assert batches == [
        [("livesync.events", 1), ("livesync.events", 2)],
        [("livesync.reset", None)],
        [("livesync.events", 1), ("livesync.events", 2)],
        [("livesync.events", 3)],
    ]


async def test_a_redis_that_stops_answering_is_an_outage_within_the_layer_timeout(
    pubsub_hub, monkeypatch, caplog, store_id
):
    """Packets dropped without a reset (no socket timeout on the layer's connections): no call hangs."""
    hub, proxy = pubsub_hub
    monkeypatch.setattr(layer_redis, "TIMEOUT_SECONDS", 0.3)
    member = Recorder()
    await hub.join(store_id, member)
    try:
        proxy.stall()
        await hub.publish(store_id, {"type": "livesync.events", "first": 1, "last": 1})
        assert [message["last"] for message in member.messages] == [1], "local sockets must be served meanwhile"
        assert await until(lambda: down(hub), timeout=3), "a publish to a silent Redis hung"
        assert logged(caplog, "channel layer unreachable") == 1
        other = Recorder()
        await asyncio.wait_for(hub.join(f"{store_id}.other", other), 1)
        assert hub.socket_count(f"{store_id}.other") == 1
        await asyncio.wait_for(hub.hosts.watch(), 3)
        assert down(hub) and logged(caplog, "channel layer unreachable") == 1
        proxy.restore()
        assert await rejoin(hub), "the hub did not come back once Redis answered"
        assert not down(hub)
    finally:
        await hub.stop()


def events(seq_num):
    return {"type": "livesync.events", "first": seq_num, "last": seq_num}


async def keep_to_itself(hub, store_id, batches):
    """Publish events of ``store_id`` until the hub keeps them off Redis; returns the last seqNum published."""
    assert await until(lambda: hub.followers.listening), "the hub's own follow notice did not come back"
    seq_num = 0
    while not hub.followers.keeps(store_id) and seq_num < 50:
        seq_num += 1
        await hub.publish(store_id, events(seq_num))
        await until(lambda n=seq_num: hub._outgoing.empty() and sum(map(len, batches)) >= n, timeout=1)
    assert hub.followers.keeps(store_id), f"{seq_num} events of a store followed only here all went to Redis"
    return seq_num


async def test_a_store_no_other_process_follows_stays_off_redis_until_another_process_follows_it(pubsub_hub, store_id):
    """Its events reach the local socket only; the first follower elsewhere gets a head nudge, then every event."""
    hub, _ = pubsub_hub
    local, remote, batches = Recorder(), Recorder(), []
    hub._publisher.publish = recording(hub._publisher.publish, batches)
    await hub.join(store_id, local)
    other_process = another_process()
    try:
        published = await keep_to_itself(hub, store_id, batches)
        for seq_num in range(published + 1, published + 6):
            await hub.publish(store_id, events(seq_num))
        assert [message["last"] for message in local.messages] == list(range(1, published + 6))
        assert sum(map(len, batches)) == published, "events of a store followed only here went to Redis"

        await other_process.join(store_id, remote)
        assert await until(lambda: remote.messages), "the events kept off Redis were never announced"
        assert remote.messages[0]["type"] == "livesync.head" and remote.messages[0]["head"] == published + 5
        await hub.publish(store_id, events(published + 6))
        assert await until(lambda: len(remote.messages) >= 2), "an event after the other process followed was lost"
        assert remote.messages[1]["type"] == "livesync.events" and remote.messages[1]["last"] == published + 6
        assert not hub.followers.keeps(store_id)
    finally:
        await other_process.stop()
        await hub.stop()


async def test_a_store_followed_in_another_process_before_this_hub_started_goes_to_redis(pubsub_hub, store_id):
    """No notice told this hub of that follower: the subscriber count Redis answers with does."""
    hub, _ = pubsub_hub
    local, remote, batches = Recorder(), Recorder(), []
    other_process = another_process()
    await other_process.join(store_id, remote)
    assert await until(lambda: other_process._outgoing.empty())
    await asyncio.sleep(0.2)  # its follow notice went out before this hub listens
    hub._publisher.publish = recording(hub._publisher.publish, batches)
    await hub.join(store_id, local)
    try:
        assert await until(lambda: hub.followers.listening), "the hub's own follow notice did not come back"
        assert store_id not in hub.followers._noticed_at, "the hub heard of the other process's following after all"
        for seq_num in range(1, 21):
            await hub.publish(store_id, events(seq_num))
            await until(lambda n=seq_num: hub._outgoing.empty() and sum(map(len, batches)) >= n, timeout=1)
        assert await until(lambda: len(remote.messages) >= 20), f"{len(remote.messages)} of 20 arrived"
        assert [message["last"] for message in remote.messages] == list(range(1, 21))
        assert not hub.followers.keeps(store_id)
    finally:
        await other_process.stop()
        await hub.stop()


async def test_a_hub_that_may_have_missed_follow_notices_announces_what_it_kept_and_publishes_again(
    pubsub_hub, monkeypatch, store_id
):
    """Its backlog dropped, or the layer down: a follow notice may be among what it never heard."""
    hub, proxy = pubsub_hub
    monkeypatch.setattr(hub_module, "INBOUND_LIMIT", 5)
    local, batches = Recorder(), []
    hub._publisher.publish = recording(hub._publisher.publish, batches)
    await hub.join(store_id, local)
    try:
        published = await keep_to_itself(hub, store_id, batches)
        await hub.publish(store_id, events(published + 1))
        for index in range(20):
            hub._inbound.put_nowait({"type": "livesync.events", "first": index, "last": index, "store_id": "other"})
        hub._bound_inbound_backlog()
        assert not hub.followers.keeps(store_id)
        announced = ("livesync.head", published + 1)
        assert await until(lambda: announced in batches[-1]), "the kept events were not announced"
        await hub.publish(store_id, events(published + 2))
        assert await until(lambda: ("livesync.events", published + 2) in batches[-1]), "the next event stayed local"

        await keep_to_itself(hub, store_id, batches)
        proxy.cut()
        await hub.hosts.watch()
        proxy.restore()
        assert await rejoin(hub), "the hub did not subscribe once Redis answered"
        await hub.publish(store_id, events(1000))
        assert await until(lambda: ("livesync.events", 1000) in batches[-1]), "an event after an outage stayed local"
    finally:
        await hub.stop()


async def test_a_follower_whose_notice_never_came_gets_the_kept_events_at_the_next_head_check(
    pubsub_hub, settings, store_id
):
    """A lost notice, or a process of an older livesync that sends none: the kept head goes through Redis once per
    head check, and the count Redis answers with tells the hub of the follower."""
    hub, _ = pubsub_hub
    settings.LIVESYNC = {"HEAD_CHECK_INTERVAL": 0.3}
    local, remote, batches = Recorder(), Recorder(), []
    hub._publisher.publish = recording(hub._publisher.publish, batches)
    await hub.join(store_id, local)
    silent_process = another_process()
    silent_process._tracks_followers = False
    try:
        published = await keep_to_itself(hub, store_id, batches)
        await hub.publish(store_id, events(published + 1))
        await silent_process.join(store_id, remote)
        # Kept, unless a head check since the join announced the event before it and learnt of the follower.
        await hub.publish(store_id, events(published + 2))
        assert await until(lambda: remote.messages), "the kept head was not announced"
        assert remote.messages[0]["type"] == "livesync.head" and remote.messages[0]["head"] >= published + 1
        assert await until(lambda: not hub.followers.keeps(store_id)), "the announcement's count was not heeded"
        await hub.publish(store_id, events(published + 3))
        assert await until(lambda: remote.messages[-1].get("last") == published + 3), "the next event stayed local"
    finally:
        await silent_process.stop()
        await hub.stop()


async def test_a_socket_that_joins_while_the_hub_rejoins_after_an_outage_is_subscribed_too(
    pubsub_hub, monkeypatch, store_id
):
    hub, proxy = pubsub_hub
    first, joining = Recorder(), Recorder()
    await hub.join(store_id, first)
    other_process = another_process()
    group_add, joins = hub.layer.group_add, []

    async def group_add_while_another_socket_joins(group, channel):
        if group == hub_module.messages.group_name(store_id) and not joins:
            joins.append(asyncio.ensure_future(hub.join(f"{store_id}-joining", joining)))
            await asyncio.sleep(0)
        return await group_add(group, channel)

    try:
        proxy.cut()
        await hub.hosts.watch()
        proxy.restore()
        monkeypatch.setattr(hub.layer, "group_add", group_add_while_another_socket_joins)
        assert await rejoin(hub), "the hub did not subscribe once Redis answered"
        assert joins and joins[0].done()
        # As in another process: its own connections, while this hub's reconnect after the outage.
        message = {"type": "livesync.events", "first": 1, "last": 1, "store_id": f"{store_id}-joining"}
        for _ in range(50):
            await other_process.layer.group_send(hub_module.messages.group_name(f"{store_id}-joining"), message)
            if await until(lambda: joining.messages, timeout=0.2):
                break
        assert joining.messages, "the store joined during the rejoin was never subscribed"
    finally:
        await other_process.stop()
        await hub.stop()


# Several Redis hosts: servers of the test's own, killed and restarted like a crashed shard.


@pytest.fixture
def two_hosts(settings, tmp_path):
    """Two Redis servers; ``use(kind)`` makes the default layer the channels_redis layer ``kind`` on both."""
    with RedisServer(tmp_path) as first, RedisServer(tmp_path) as second:

        def use(kind):
            settings.CHANNEL_LAYERS = {"default": redis_channel_layer([first.url, second.url], kind)}
            settings.LIVESYNC = {"HEAD_CHECK_INTERVAL": 3600}
            channel_layers.backends.clear()

        yield (first, second), use
    channel_layers.backends.clear()


def store_on(shard, name="store"):
    """A storeId whose group the default layer keeps on host ``shard``."""
    for number in range(1000):
        store_id = f"{name}-{number}"
        if layer_redis.group_shard(hub_module.messages.group_name(store_id)) == shard:
            return store_id
    raise AssertionError(f"no storeId hashed to host {shard}")


def channel_shard(layer, channel):
    """The host a channel of ``layer`` lives on, as channels_redis places it."""
    if isinstance(layer, RedisChannelLayer):
        return layer.consistent_hash(layer.non_local_name(channel))
    return _consistent_hash(channel, len(layer_redis.hosts()))


async def close_layer(layer):
    await asyncio.wait_for(layer.close_pools() if isinstance(layer, RedisChannelLayer) else layer.flush(), 5)


async def hub_with_channel_on(shard):
    """A hub, as in another process, whose own channel lives on host ``shard``."""
    for _ in range(64):
        hub = hub_module.Hub(channel_layers.make_backend("default"))
        await hub._start()
        if channel_shard(hub.layer, hub.channel_name) == shard:
            return hub
        await hub.stop()
        await close_layer(hub.layer)
    raise AssertionError(f"no hub's channel landed on host {shard}")


async def channel_on(shard):
    """A layer of another process's own and a channel of it that lives on host ``shard``."""
    for _ in range(64):
        layer = channel_layers.make_backend("default")
        channel = await layer.new_channel(prefix="test.")
        if channel_shard(layer, channel) == shard:
            return layer, channel
        await close_layer(layer)
    raise AssertionError(f"no channel landed on host {shard}")


async def reaches(sender, store_id, member, seq_num, timeout=5.0):
    """Whether a ``group_send`` of event ``seq_num`` through ``sender`` reaches ``member``, tried until ``timeout``."""
    message = {**events(seq_num), "store_id": store_id, "origin": "other"}
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            await sender.group_send(hub_module.messages.group_name(store_id), message)
        except Exception:  # noqa: BLE001 - the sender's own connection to a restarted host; tried again
            pass
        if await until(lambda: any(m.get("last") == seq_num for m in member.messages), timeout=0.2):
            return True
    return False


def unavailable():
    return prometheus_client.REGISTRY.get_sample_value("livesync_unavailable_total", {"service": "channel_layer"}) or 0


@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_a_hub_rejoins_its_groups_on_a_host_that_restarted_though_its_own_channel_lives_on_the_other(
    two_hosts, kind, caplog
):
    """Killed and started again between two watches: nothing this hub sent or received failed, and the
    restarted server forgot the group (core) or the layer's subscription (pub/sub). The new run_id tells."""
    (first, _), use = two_hosts
    use(kind)
    hub = await hub_with_channel_on(1)
    store_id, member = store_on(0), Recorder()
    sender = channel_layers.make_backend("default")
    try:
        await hub.join(store_id, member)
        assert await until(lambda: all(shard.run_id for shard in hub.shards)), "the hub did not watch the hosts"
        assert await reaches(sender, store_id, member, 1)
        first.kill()
        first.start()
        await hub.hosts.watch()
        assert await reaches(sender, store_id, member, 2), "the group on the restarted host was not joined again"
        assert logged(caplog, f"channel layer unreachable at 127.0.0.1:{first.port}") == 1
        assert logged(caplog, f"channel layer reachable again at 127.0.0.1:{first.port}") == 1
    finally:
        await hub.stop()
        await close_layer(sender)


async def collect(layer, channel, into):
    while True:
        into.append(await layer.receive(channel))


@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_one_host_down_is_one_outage_of_that_host_and_the_other_hosts_stores_are_still_broadcast(
    two_hosts, kind, caplog
):
    (first, _), use = two_hosts
    use(kind)
    hub = await hub_with_channel_on(1)
    other, channel = await channel_on(1)
    down_store, up_store = store_on(0, "down"), store_on(1, "up")
    received = []
    for store_id in (down_store, up_store):
        await hub.join(store_id, Recorder())
        await other.group_add(hub_module.messages.group_name(store_id), channel)
    collecting = asyncio.ensure_future(collect(other, channel, received))
    outages_before = unavailable()
    try:
        first.kill()
        for seq_num in range(1, 6):
            await hub.publish(down_store, events(seq_num))
            await hub.publish(up_store, events(seq_num))
            await until(lambda: hub._outgoing.empty())
            await hub.hosts.watch()
        up_received = lambda: [m["last"] for m in received if m["store_id"] == up_store]  # noqa: E731
        assert await until(lambda: up_received() == [1, 2, 3, 4, 5]), f"the other host's store got {up_received()}"
        assert logged(caplog, "channel layer unreachable") == 1
        assert logged(caplog, f"channel layer unreachable at 127.0.0.1:{first.port}") == 1
        assert logged(caplog, "channel layer reachable again") == 0
        assert unavailable() - outages_before == 1
        first.start()
        assert await rejoin(hub), "the hub did not rejoin the restarted host"
        assert logged(caplog, f"channel layer reachable again at 127.0.0.1:{first.port}") == 1
        assert logged(caplog, "channel layer unreachable") == 1 and unavailable() - outages_before == 1
    finally:
        collecting.cancel()
        await hub.stop()
        await close_layer(other)


async def test_the_admin_counts_every_process_whichever_host_is_down(two_hosts):
    (first, second), use = two_hosts
    use("core")
    await presence.publish("process-a", {"s": 2, "t": 1})
    await presence.publish("process-b", {"s": 1})
    assert await presence.socket_counts(["s", "t", "u"]) == [3, 1, 0]
    first.kill()
    assert await presence.socket_counts(["s", "t"]) == [3, 1]
    with pytest.raises(Exception):  # noqa: B017 - whichever error redis-py raises for a refused connection
        await presence.publish("process-a", {"s": 2, "t": 1})
    first.start()
    # The processes' next head checks write their counts on the restarted host too.
    await presence.publish("process-a", {"s": 2, "t": 1})
    await presence.publish("process-b", {"s": 1})
    second.kill()
    assert await presence.socket_counts(["s", "t"]) == [3, 1]
    first.kill()
    with pytest.raises(Exception):  # noqa: B017 - no host answers: the admin shows "-"
        await presence.socket_counts(["s"])


async def test_livesyncs_own_clients_reach_a_sentinel_managed_master(settings, tmp_path):
    with RedisServer(tmp_path) as master, RedisSentinel(tmp_path, master) as sentinel:
        hosts = redis_hosts(sentinels=f"127.0.0.1:{sentinel.port}", master_names=sentinel.master_name)
        settings.CHANNEL_LAYERS = {"default": redis_channel_layer(hosts, "pubsub")}
        channel_layers.backends.clear()
        layer = channel_layers.make_backend("default")
        try:
            assert await layer_redis.run_id(0) == master.run_id()
            await presence.publish("process-a", {"s": 2})
            assert await presence.socket_counts(["s"]) == [2]
            channel = await layer.new_channel()
            await layer.group_add("livesync.store.s", channel)
            message = {"type": "livesync.events", "last": 1}
            assert await publisher.for_layer(layer).publish([("livesync.store.s", message)], 0) == [1]
            assert await asyncio.wait_for(layer.receive(channel), 5) == message
        finally:
            await close_layer(layer)


def test_the_example_project_takes_several_hosts_or_sentinel_masters():
    assert redis_hosts("redis://a:6379/0") == ["redis://a:6379/0"]
    assert redis_hosts("redis://a:6379/0, redis://b:6380/1") == ["redis://a:6379/0", "redis://b:6380/1"]
    assert redis_hosts(sentinels="s1:26379, s2:26380", master_names="one,two") == [
        {"sentinels": [("s1", 26379), ("s2", 26380)], "master_name": "one"},
        {"sentinels": [("s1", 26379), ("s2", 26380)], "master_name": "two"},
    ]
    assert redis_hosts() == []
    for wrong in (("redis://a", "s1:1", "m"), (None, "s1:1", None), (None, "s1", "m")):
        with pytest.raises(ImproperlyConfigured):
            redis_hosts(*wrong)
