"""Replays of the reference server's recorded sessions: livesync must answer byte for byte alike.

Push times (``createdAt``) are blanked on both sides; everything else — tags,
key order, spacing, error texts — is compared as text.
"""

import pytest

from tests.support.transcripts import normalize, probe

pytestmark = [
    pytest.mark.protocol,
    pytest.mark.django_db(transaction=True),
]

SINGLE_SOCKET_PROBES = [
    "ws_prefixed_path",
    "ping_pong",
    "pull_empty_store",
    "push3_then_pull",
    "push_empty_batch",
    "event_without_args",
]


async def replay(connect, store_id, socket_transcript, path="/websocket"):
    client = await connect(store_id, path=path)
    received = []
    for sent in socket_transcript["sent"]:
        await client.send(sent["data"])
        while not await client.nothing(0.3):
            received.append(normalize(await client.recv_text()))
    return received


def recorded(socket_transcript):
    return [normalize(frame["data"]) for frame in socket_transcript["received"]]


@pytest.mark.parametrize("name", SINGLE_SOCKET_PROBES)
async def test_single_socket_sessions_match(connect, store_id, name):
    transcript = probe(name)
    path = "/some/prefix/websocket" if name == "ws_prefixed_path" else "/websocket"
    assert await replay(connect, store_id, transcript, path) == recorded(transcript)


async def test_chunked_pull_session_matches(connect, store_id):
    transcript = probe("chunking_250")
    assert await replay(connect, store_id, transcript["pushSocket"]) == recorded(transcript["pushSocket"])
    assert await replay(connect, store_id, transcript["pullSocket"]) == recorded(transcript["pullSocket"])


async def test_reconnect_session_matches(connect, store_id):
    transcript = probe("reconnect_resume")
    assert await replay(connect, store_id, transcript["first"]) == recorded(transcript["first"])
    assert await replay(connect, store_id, transcript["second"]) == recorded(transcript["second"])
