"""No storeId can be made unusable by another (cases 4, 5 and 8).

Table names are derived from storeIds, so a client can aim for the name another store would get: the
hash-suffixed fallback of ``sq_x`` is a storeId of its own, and on SQLite ``Abc`` and ``abc`` name one
table. Each store must still get a table of its own, and a push must never be answered "database
unavailable" while the database is up.
"""

import hashlib

import pytest

from tests.support.v03_socket import SyncSocket, store_url
from tests.support.v04_socket import events

pytestmark = pytest.mark.hostile


async def _push_and_read_back(server, store_id, label):
    socket = await SyncSocket(label, store_url(server.url, store_id)).open()
    outcome = await socket.push(events(socket.head + 1, socket.head + 2, client_id=label))
    assert outcome.acked, f"{store_id!r}: {outcome.message}"
    await socket.close()
    reader = await SyncSocket(f"{label}-reader", store_url(server.url, store_id)).open()
    await reader.close()
    return [event["clientId"] for event in reader.history]


async def test_taking_a_stores_fallback_table_names_first_does_not_block_it(server, store_id):
    target = f"sq_x_{store_id}".replace("-", "_")
    squatters = [target + "_" + hashlib.sha256(target.encode()).hexdigest()[:10], target.replace("_", "-")]
    for index, squatter in enumerate(squatters):
        assert await _push_and_read_back(server, squatter, f"squatter{index}") == [f"squatter{index}"] * 2
    assert await _push_and_read_back(server, target, "owner") == ["owner"] * 2
    for index, squatter in enumerate(squatters):
        reader = await SyncSocket("check", store_url(server.url, squatter)).open()
        await reader.close()
        assert [event["clientId"] for event in reader.history] == [f"squatter{index}"] * 2


async def test_store_ids_differing_only_in_case_are_separate_stores(server, store_id):
    lower = f"case-{store_id}"
    names = [lower.upper(), lower, lower.capitalize()]
    for index, name in enumerate(names):
        assert await _push_and_read_back(server, name, f"writer{index}") == [f"writer{index}"] * 2
    for index, name in enumerate(names):
        assert await _push_and_read_back(server, name, f"writer{index}") == [f"writer{index}"] * 4
