import asyncio
import os
import uuid

import pytest

from tests import services


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
    from tests.wsclient import Client

    clients = []

    async def open_client(target_store_id=None, payload=None, **kwargs):
        client = Client(target_store_id or store_id, payload, **kwargs)
        clients.append(client)
        connected, _ = await client.connect()
        assert connected
        return client

    yield open_client
    for client in clients:
        if client.connected:
            await client.close()


@pytest.fixture(autouse=True)
async def fresh_channel_layers():
    """A new hub and channel layer per test: both hold tasks and locks bound to the test's event loop."""
    from channels.layers import channel_layers

    from syncapp.hub import existing_hub

    yield
    # Bounded: cancelling a task blocked in channels_redis's receive can leave its
    # clean-up waiting on a connection that no one reads any more.
    hub = existing_hub()
    if hub is not None:
        await asyncio.wait_for(hub.stop(), 5)
    for layer in list(channel_layers.backends.values()):
        close_pools = getattr(layer, "close_pools", None)
        if close_pools is not None:
            try:
                await asyncio.wait_for(close_pools(), 5)
            except asyncio.TimeoutError:
                pass
    channel_layers.backends.clear()
