import asyncio
import os
import uuid

import pytest

from tests.support import services


def pytest_report_header(config):
    backend = os.environ.get("LIVESYNC_TEST_BACKEND", "sqlite")
    if backend == "postgres":
        return "livesync backend: PostgreSQL + Redis channel layer"
    return "livesync backend: SQLite + in-memory channel layer"


def pytest_collection_modifyitems(config, items):
    """On the PostgreSQL + Redis pass, make sure both are up before anything touches them."""
    if os.environ.get("LIVESYNC_TEST_BACKEND") != "postgres":
        return
    for name, url in (("PostgreSQL", services.POSTGRES_URL), ("Redis", services.REDIS_URL)):
        if not services.reachable(url):
            message = f"{name} is not reachable at {url}: PostgreSQL + Redis protocol tests skipped"
            if os.environ.get("CI") == "true":
                raise pytest.UsageError(message.replace("skipped", "cannot be skipped under CI=true"))
            for item in items:
                item.add_marker(pytest.mark.skip(reason=message))
            return


@pytest.fixture
def store_id():
    """A storeId no other test uses (eventlog tables outlive the per-test flush)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def connect(store_id):
    """Open connected in-process clients; all are closed after the test."""
    from tests.support.v03_client import Client

    clients = []

    async def open_client(target_store_id=None, payload=None, **kwargs):
        client = Client(target_store_id or store_id, payload, **kwargs)
        clients.append(client)
        connected, _ = await client.connect()
        assert connected
        return client

    yield open_client
    await bounded(*(client.close() for client in clients if client.connected))


@pytest.fixture(autouse=True)
async def fresh_channel_layers():
    """A new hub and channel layer per test: both hold tasks and locks bound to the test's event loop."""
    from channels.layers import channel_layers

    from syncapp.fanout.hub import existing_hub

    yield
    hub = existing_hub()
    if hub is not None:
        await hub.stop()
    await bounded(*(layer.close_pools() for layer in channel_layers.backends.values() if hasattr(layer, "close_pools")))
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
async def close_sync_thread_connections():
    """Tests reach the ORM through ``sync_to_async``, whose thread keeps its connection open afterwards:
    close it, as the end of a request would, so that the test database can be dropped."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


async def bounded(*coroutines, timeout=5):
    """Run clean-up coroutines for at most ``timeout`` seconds.

    Not ``wait_for``: after its timeout it waits for the cancelled coroutine to
    finish, and channels_redis's clean-up (a cancelled blocking read, closing a
    pool) can outlast any timeout; a teardown must not hang the suite on it.
    """
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


@pytest.fixture(scope="session")
def distributions(tmp_path_factory):
    """``(wheel, sdist)`` of this checkout, built once per run."""
    from tests.support.distribution import build

    return build(tmp_path_factory.mktemp("dist"))
