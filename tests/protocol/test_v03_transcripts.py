"""Replays of every recorded session of the 0.3.1 reference server (``ref-0.3.1-transcripts.json``).

Each probe is replayed in process against the deployed ASGI application (``livesync_project.asgi``), with the
reference's payload validator on (the recording's token): plain HTTP requests, refused handshakes (on a server
with the ``websocket.http.response`` extension, as the reference answers them; daphne turns every refusal into a
403, see the README), and sessions of one to three sockets, which ``tests/support/transcripts.py`` orders by
what arrived, never by a clock. Answers are compared as text: tags, key order, spacing, error texts. Push times
(``createdAt``) are blanked on both sides, and a content type is compared by its media type.

livesync differs from the reference on purpose in a few ways (README, "Deliberate differences from the
reference"): ``DELIBERATE`` names each probe one shows in, with its reason, and turns the recording into what
livesync answers instead. ``MISMATCHES`` names the probes where livesync differs in a way the README does not
list; they are expected to fail, strictly. Every other probe must match the recording as it is.
"""

import hashlib
import json
import re
from urllib.parse import quote

import pytest

from livesync_project.asgi import application
from tests.support.transcripts import (
    Action,
    ReplaySocket,
    http_exchange,
    media_type,
    normalize,
    probe_names,
    query_string,
    recorded_probe,
    refused_handshake,
    run_timeline,
    split_url,
)

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

AUTH_TOKEN = "insecure-token-change-me"
# The payload as the client puts it in the query (before the query's own encoding).
TOKEN_PAYLOAD = quote(json.dumps({"authToken": AUTH_TOKEN}, separators=(",", ":")), safe="")
# The recording's admin secret, and ours (tests/settings.py).
RECORDED_ADMIN_SECRET = "admin-secret-ls03"
ADMIN_SECRET = "test-admin-secret"
PING = '{"_tag":"WSMessage.Ping","requestId":"ping"}'
PONG = '{"_tag":"WSMessage.Pong","requestId":"ping"}'
PARENT_MISMATCH = re.compile(r"Invalid parent event number\. Received e(\d+) but expected e(\d+)$")

# Probes whose recorded store already held three events, pushed by the recorder on a socket of its own: the
# events the recording shows them to be are pushed before the replay.
SEEDED = {"multiple_pulls_one_socket", "push_wrong_parent", "admin_reset"}
# Probes whose sockets were opened one after another, each socket's times counting from its own opening.
SEQUENTIAL_SOCKETS = {"chunking_250", "reconnect_resume"}


def seed_events():
    return [
        {
            "name": "v1.TodoCreated",
            "args": {"id": f"todo-{n}", "text": f"todo {n}", "createdBy": "seed"},
            "seqNum": n,
            "parentSeqNum": n - 1,
            "clientId": "seed",
            "sessionId": "harness-session",
        }
        for n in (1, 2, 3)
    ]


@pytest.fixture(autouse=True)
def reference_validator(settings, monkeypatch):
    """The reference ran makeWorker with the seed's validatePayload: the recording's token, or 400."""
    settings.LIVESYNC = {**settings.LIVESYNC, "VALIDATE_PAYLOAD": "livesync_project.auth.validate_payload"}
    monkeypatch.setenv("LIVESYNC_AUTH_TOKEN", AUTH_TOKEN)


# Frames livesync sends where the reference sends others. Some are patterns (``re.Pattern``): livesync's
# ``Invalid message:`` texts are its own, and only their start is part of the protocol (README).


def frame(data, t):
    return {"t": t, "data": data}


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def error(request_id, message):
    return compact({"_tag": "WSMessage.Error", "requestId": request_id, "message": message})


def invalid(request_id):
    """livesync's answer to a malformed frame: an Error with the frame's requestId and an ``Invalid message:`` text."""
    start = re.escape(f'{{"_tag":"WSMessage.Error","requestId":"{request_id}","message":"Invalid message: ')
    return re.compile(start + r'(?:[^"\\]|\\.)+"\}')


def pull_res(batch, request_id, context="push"):
    metadata = {"_tag": "Some", "value": {"createdAt": "<createdAt>"}}
    return compact(
        {
            "_tag": "WSMessage.PullRes",
            "batch": [{"eventEncoded": event, "metadata": metadata} for event in batch],
            "requestId": {"context": context, "requestId": request_id},
            "remaining": 0,
        }
    )


# What each deliberate difference makes of a recorded probe: it changes ``expected`` ({label: [frames]}) into
# the frames livesync sends; ``context`` holds what the replay sent, our storeIds and the events stored.


def _any_ping_gets_a_pong(expected, context):
    expected[""] = [frame(PONG, expected[""][0]["t"])]


def _malformed_frames_get_an_error(*request_ids):
    def change(expected, context):
        sent = context["sent"][""]
        answers = [frame(invalid(request_id), at["t"]) for request_id, at in zip(request_ids, sent, strict=False)]
        expected[""] = sorted(expected[""] + answers, key=lambda entry: entry["t"])

    return change


def _binary_frames_get_an_error(expected, context):
    expected[""] = [frame(error("", "Binary frames are not supported"), context["sent"][""][0]["t"])]


def _the_whole_batch_is_checked(expected, context):
    # e1 then e5 (on parent e4) is refused whole; the next push, on parent e5, then meets an empty store.
    refused, after = (sent["t"] for sent in context["sent"][""])
    expected[""] = [
        frame(error("push-gap-batch", "Invalid batch: event 1 has parent e4 but follows e1"), refused),
        frame(error("push-after-gap", "Invalid parent event number. Received e5 but expected e0"), after),
    ]


def _a_rejected_push_first_brings_the_client_up_to_date(expected, context):
    """Before the rejection of a push whose parent is behind the head, the socket gets the events after that
    parent up to the head, as a ``context: "push"`` PullRes answering that push, minus those it already got."""
    for label, received in expected.items():
        changed, has = [], 0
        for entry in received:
            parsed = _parsed(entry["data"])
            if parsed.get("_tag") == "WSMessage.PullRes":
                has = max([has, *(item["eventEncoded"]["seqNum"] for item in parsed["batch"])])
            mismatch = PARENT_MISMATCH.match(parsed.get("message", ""))
            if mismatch and int(mismatch.group(1)) < int(mismatch.group(2)):
                parent, head = int(mismatch.group(1)), int(mismatch.group(2))
                lacking = [event for event in context["stored"] if max(parent, has) < event["seqNum"] <= head]
                if lacking:
                    changed.append(frame(pull_res(lacking, parsed["requestId"]), entry["t"]))
                    has = head
            changed.append(entry)
        expected[label] = changed


def _no_batch_before_the_client_says_where_it_stands(expected, context):
    """A socket gets no batch before the answer to its first push or pull: until then its client's position is
    unknown, and a 0.3.1 client that reconnected would take the batch across a gap. A push on a stale parent
    then brings the client up to date instead."""
    for label, received in expected.items():
        own = {_parsed(sent["data"]).get("requestId") for sent in context["sent"].get(label, ())}
        kept, positioned = [], False
        for entry in received:
            parsed = _parsed(entry["data"])
            request_id = parsed.get("requestId")
            answers_own = (request_id.get("requestId") if isinstance(request_id, dict) else request_id) in own
            if parsed.get("_tag") == "WSMessage.PullRes" and not positioned and not answers_own:
                continue
            positioned = positioned or answers_own
            kept.append(entry)
        expected[label] = kept
    _a_rejected_push_first_brings_the_client_up_to_date(expected, context)


def _admin_reset_really_resets(expected, context):
    # The store is empty after the reset: the pull gets no event, the push on e0 is taken (as e1), and the push
    # on e3 is then ahead of the head.
    pushed = json.loads(context["sent"][""][3]["data"])["batch"]
    times = [entry["t"] for entry in expected[""]]
    expected[""] = [
        frame(error("reset-wrong", "Invalid admin secret"), times[0]),
        frame('{"_tag":"WSMessage.AdminResetRoomRes","requestId":"reset-right"}', times[1]),
        frame(pull_res([], "pull-after-reset", context="pull"), times[2]),
        frame('{"_tag":"WSMessage.PushAck","requestId":"push-after-reset-p0"}', times[3]),
        frame(pull_res(pushed, "push-after-reset-p0"), times[3]),
        frame(error("push-after-reset-p3", "Invalid parent event number. Received e3 but expected e1"), times[4]),
    ]


def _admin_info_is_the_sha256_of_the_store_id(expected, context):
    ours = hashlib.sha256(context["store_ids"][0].encode()).hexdigest()
    for entry in expected[""]:
        entry["data"] = re.sub(r'"durableObjectId":"[0-9a-f]+"', f'"durableObjectId":"{ours}"', entry["data"])


NO_BATCH_BEFORE_POSITION = "a socket is sent no batch before its client pulls or pushes"
MALFORMED = "malformed frames are answered with WSMessage.Error and change nothing; the reference ignores them"

# Probe -> (the README's reason, what it makes of the recording).
DELIBERATE = {
    "ping_noncanonical": ("any valid Ping gets a Pong, not only the byte-exact string", _any_ping_gets_a_pong),
    "invalid_json": (MALFORMED, _malformed_frames_get_an_error("")),
    "unknown_tag": (MALFORMED, _malformed_frames_get_an_error("bogus-1")),
    "server_only_tag": (MALFORMED, _malformed_frames_get_an_error("x")),
    "invalid_event_schema": (MALFORMED, _malformed_frames_get_an_error("push-bad-1", "push-bad-2", "pull-bad", "")),
    "binary_frame": ("binary frames are answered with WSMessage.Error, not ignored", _binary_frames_get_an_error),
    "batch_internal_gap": ("the whole batch is checked, not only the first parent", _the_whole_batch_is_checked),
    "push_wrong_parent": (
        "a rejected push first brings the client up to date",
        _a_rejected_push_first_brings_the_client_up_to_date,
    ),
    "admin_reset": ("AdminResetRoomReq really resets; the reference only clears its head", _admin_reset_really_resets),
    "admin_info": ("AdminInfoReq returns the SHA-256 of the storeId", _admin_info_is_the_sha256_of_the_store_id),
    "broadcast": (NO_BATCH_BEFORE_POSITION, _no_batch_before_the_client_says_where_it_stands),
    "concurrent_conflicting_push": (NO_BATCH_BEFORE_POSITION, _no_batch_before_the_client_says_where_it_stands),
}

# Probes where livesync answers otherwise than the reference in a way the README does not list: each is expected
# to fail, strictly, until livesync or the README changes.
MISMATCHES = {
    "ws_malformed_payload": (
        "the 500 body for a payload that is not URI-encoded JSON names Python's JSON error "
        "('is not URI-encoded JSON: Expecting value…') where the reference prints Effect's schema tree; the README "
        "says 'the same status and text'"
    ),
}


def probes():
    def marks(name):
        return [pytest.mark.xfail(reason=MISMATCHES[name], strict=True)] if name in MISMATCHES else []

    return [pytest.param(name, marks=marks(name)) for name in probe_names()]


@pytest.mark.parametrize("name", probes())
async def test_every_recorded_probe_matches_the_reference(name, store_id):
    transcript = recorded_probe(name)["transcript"]
    if "request" in transcript:
        ours, expected = await replay_http(transcript)
    elif "sent" in transcript and transcript["httpStatus"] != 101:
        ours, expected = await replay_refusal(transcript, store_id)
    else:
        ours, expected = await replay_sockets(name, transcript, store_id)
    assert ours == expected


def test_every_listed_difference_names_a_recorded_probe():
    assert set(DELIBERATE) <= set(probe_names()) and set(MISMATCHES) <= set(probe_names())


async def replay_http(transcript):
    request = transcript["request"]
    path, query = split_url(request["path"])
    status, headers, body = await http_exchange(
        application, request["method"], path, query_string(query), headers=list(request["headers"].items())
    )
    ours = (status, media_type(headers.get("content-type")), body)
    return ours, (transcript["httpStatus"], media_type(transcript["contentType"]), transcript["httpBody"])


async def replay_refusal(transcript, store_id):
    path, query = split_url(transcript["url"])
    query = [(key, store_id if key == "storeId" else value) for key, value in query]
    ours = await refused_handshake(application, path, query_string(query))
    return ours, (transcript["httpStatus"], transcript["httpBody"])


async def replay_sockets(name, transcript, store_id):
    """Replays the probe's sockets; returns ``(ours, expected)``, each ``{label: [frame text, …]}``."""
    recorded = {"": transcript} if "sent" in transcript else transcript
    store_ids, sockets = {}, {}
    for label, socket in recorded.items():
        path, query = split_url(socket["url"])
        ours = store_ids.setdefault(dict(query)["storeId"], f"{store_id}-{len(store_ids)}")
        query = [(key, ours if key == "storeId" else value) for key, value in query]
        sockets[label] = ReplaySocket(application, path, query_string(query), PING, PONG)
    stored = seed_events() if name in SEEDED else []
    if stored:
        await seed(next(iter(store_ids.values())), stored)

    expected = {
        label: [frame(normalize(entry["data"]), entry["t"]) for entry in socket["received"]]
        for label, socket in recorded.items()
    }
    if name in DELIBERATE:
        pushed = [event for socket in recorded.values() for entry in socket["sent"] for event in _pushed(entry)]
        context = {
            "sent": {label: socket["sent"] for label, socket in recorded.items()},
            "store_ids": list(store_ids.values()),
            "stored": stored + _taken(pushed, len(stored)),
        }
        DELIBERATE[name][1](expected, context)

    groups = [[label] for label in recorded] if name in SEQUENTIAL_SOCKETS else [list(recorded)]
    for labels in groups:
        for label in labels:
            await sockets[label].open()
        actions = sorted((action for label in labels for action in _actions(label, recorded[label])), key=_time)
        # Every push waits for the answers to the pushes sent before it: the reference answered them in turn.
        answered = {}
        for action in actions:
            parsed = _parsed(action.text)
            if parsed.get("_tag") == "WSMessage.PushReq":
                action.after = dict(answered)
                answer = _answer_index(expected[action.key], parsed["requestId"])
                if answer is not None:
                    answered[action.key] = max(answered.get(action.key, 0), answer + 1)
        times = {label: [entry["t"] for entry in expected[label]] for label in labels}
        await run_timeline(actions, {label: sockets[label] for label in labels}, times)

    ours = {label: [normalize(text) for text in socket.received] for label, socket in sockets.items()}
    return ours, {label: matched(ours[label], [entry["data"] for entry in expected[label]]) for label in expected}


async def seed(store_id, events):
    """Pushes ``events`` onto the empty store, on a socket of its own that is closed before the replay."""
    query = query_string([("storeId", store_id), ("payload", TOKEN_PAYLOAD)])
    seeder = await ReplaySocket(application, "/websocket", query, PING, PONG).open()
    await seeder.send(compact({"_tag": "WSMessage.PushReq", "requestId": "seed", "batch": events}))
    await seeder.fill(2)
    assert seeder.received[0] == '{"_tag":"WSMessage.PushAck","requestId":"seed"}', seeder.received
    await seeder.close()


def matched(ours, expected):
    """``expected`` as text: an expected pattern stands for the frame of ours at its place when that matches it."""
    ours = [*ours, *[None] * len(expected)]
    return [
        our if isinstance(wanted, re.Pattern) and our is not None and wanted.fullmatch(our) else wanted
        for our, wanted in zip(ours, expected, strict=False)
    ]


def _actions(label, socket):
    for entry in socket["sent"]:
        text = entry["data"].replace(RECORDED_ADMIN_SECRET, ADMIN_SECRET)
        if entry.get("binary"):
            yield Action(entry["t"], label, data=text.encode())
        else:
            yield Action(entry["t"], label, text=text)


def _time(action):
    return action.t


def _parsed(text):
    try:
        parsed = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _pushed(entry):
    parsed = _parsed(entry["data"])
    return parsed.get("batch", []) if parsed.get("_tag") == "WSMessage.PushReq" else []


def _taken(pushed, head):
    """The events a store at ``head`` takes of ``pushed`` (in order): each one that continues its log."""
    stored = []
    for event in pushed:
        if event["parentSeqNum"] == head + len(stored) and event["seqNum"] == head + len(stored) + 1:
            stored.append(event)
    return stored


def _answer_index(entries, request_id):
    for index, entry in enumerate(entries):
        parsed = _parsed(entry["data"])
        if parsed.get("_tag") in ("WSMessage.PushAck", "WSMessage.Error") and parsed.get("requestId") == request_id:
            return index
    return None
