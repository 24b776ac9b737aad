"""One client's bad input never fails another client's request (case 6).

A client pushing NUL in a text column, in a loop, alongside 20 clients pushing to 20 other stores: with
pushes committed in groups, one unstorable push used to roll back every push of its transaction.
"""

import asyncio
import time

import pytest

from tests.support.v03_socket import SyncSocket, store_url
from tests.support.v04_socket import events

pytestmark = pytest.mark.hostile

NORMAL_CLIENTS = 20
SECONDS = 5


async def _run(servers, store_id):
    hostile = await SyncSocket("hostile", store_url(servers[0].url, f"{store_id}-hostile")).open()
    clients = [
        await SyncSocket(f"normal-{n}", store_url(servers[n % len(servers)].url, f"{store_id}-{n}")).open()
        for n in range(NORMAL_CLIENTS)
    ]
    deadline = time.monotonic() + SECONDS
    refused = []

    async def attack():
        while time.monotonic() < deadline:
            bad = events(1, 1, client_id="a\u0000b")
            outcome = await hostile.push(bad)
            refused.append(outcome.message)

    async def work(client):
        failures = []
        while time.monotonic() < deadline:
            outcome = await client.push(events(client.head + 1, client.head + 1, client_id=client.name))
            if not outcome.acked:
                failures.append(outcome.message)
        return failures

    results = await asyncio.gather(attack(), *(work(client) for client in clients))
    failures = [message for result in results[1:] for message in result]
    pushed = sum(client.acked_head for client in clients)
    for client in [hostile, *clients]:
        await client.close()
    assert refused and set(refused) == {"Invalid message: `$.batch[0].clientId` contains a NUL character"}
    assert failures == [], f"{len(failures)} of the normal clients' pushes failed: {failures[:3]}"
    assert pushed > NORMAL_CLIENTS, "the normal clients hardly pushed"


async def test_a_client_pushing_nul_fails_no_other_clients_push(server, store_id):
    await _run([server], store_id)


async def test_a_client_pushing_nul_fails_no_push_in_any_process(two_processes, store_id):
    await _run(list(two_processes), store_id)
