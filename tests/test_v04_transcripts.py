"""Replays of the 0.4 reference server's recorded WebSocket sessions (``ref-0.4.0-transcripts.json``).

The client's frames are sent as recorded; the answers are compared per
request id, in order, as text, with what two servers cannot share blanked:
push times, backendIds, the fiber ids inside an interruption's Cause, and
the message of a SyntaxError defect (the reference quotes V8's JSON.parse).
One recorded quirk of the reference is left out on purpose: it keeps
broadcasting to pulls that already ended (the client ignores those chunks);
livesync delivers only to live pulls.
"""

import json
import re

import pytest

from tests.support.transcripts import FIXTURES
from tests.support.v04_client import RpcClient

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

TRANSCRIPTS = FIXTURES / "ref-0.4.0-transcripts.json"
_CREATED_AT = re.compile(r'"createdAt":"[0-9T:.\-]+Z"')


def scenario(name):
    return next(s for s in json.loads(TRANSCRIPTS.read_text())["scenarios"] if s["name"] == name)


def text_of(frame):
    return frame.get("text") or json.dumps(frame["json"], separators=(",", ":"), ensure_ascii=False)


def normalize(text, backend_ids):
    text = _CREATED_AT.sub('"createdAt":"<createdAt>"', text)
    for backend_id in backend_ids:
        text = text.replace(f'"{backend_id}"', '"<backendId>"')
    if '"defect":{"name":"SyntaxError"' in text:
        text = '{"_tag":"Defect","defect":{"name":"SyntaxError","message":"<message>"}}'
    if '"cause":{' in text and '"Interrupt"' in text:
        frame = json.loads(text)
        frame["exit"]["cause"] = "<interrupted>"
        text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    return text


def by_request(texts):
    """Answers grouped by requestId (connection-level ones under None), each group in order."""
    groups = {}
    for text in texts:
        groups.setdefault(json.loads(text).get("requestId"), []).append(text)
    return groups


def without_chunks_after_exit(texts):
    """The reference's answers minus its chunks to pulls that had already ended."""
    ended, kept = set(), []
    for text in texts:
        frame = json.loads(text)
        if frame["_tag"] == "Chunk" and frame["requestId"] in ended:
            continue
        if frame["_tag"] == "Exit":
            ended.add(frame["requestId"])
        kept.append(text)
    return kept


def backend_ids_in(texts):
    return set(re.findall(r'"(?:backendId|expected)":"([^"]+)"', "\n".join(texts))) - {"stale-backend-id"}


async def replay(store_id, exchange):
    """Send the exchange's client frames; return (our answers, the reference's), both normalized."""
    recorded_answers = without_chunks_after_exit([text_of(f) for f in exchange["frames"] if f["dir"] == "s2c"])
    reference_ids = backend_ids_in(recorded_answers)
    client = RpcClient(store_id)
    assert (await client.connect())[0]
    answers, ours = [], set()
    try:
        for frame in (f for f in exchange["frames"] if f["dir"] == "c2s"):
            text = text_of(frame)
            for reference_id in reference_ids:
                for our_id in ours:
                    text = text.replace(reference_id, our_id)
            await client.send(text)
            while not await client.nothing(0.15):
                answers.append(await client.recv_text())
                ours = backend_ids_in(answers)
    finally:
        await client.close()
    normalized = [normalize(a, ours) for a in answers]
    return normalized, [normalize(a, reference_ids) for a in recorded_answers]


@pytest.mark.parametrize(("name", "index"), [("ws-probe", 0), ("ws-probe", 1), ("raw-edge", 8)])
async def test_ws_session_matches_the_reference(store_id, name, index):
    if name == "ws-probe" and index == 1:
        # The second probe socket expects the store the first one filled.
        await replay(store_id, scenario(name)["exchanges"][0])
    ours, reference = await replay(store_id, scenario(name)["exchanges"][index])
    assert by_request(ours) == by_request(reference)
