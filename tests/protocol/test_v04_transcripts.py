"""Replays of every recorded exchange of the 0.4.0 reference server (``ref-0.4.0-transcripts.json``).

Each scenario (real ``makeWsSync`` / ``makeHttpSync`` clients and hand-written requests) is replayed in process
against the deployed ASGI application (``livesync_project.asgi``), configured as the reference was (a payload
validator that refuses a wrong token, CORS on): its WebSockets, HTTP requests and refused handshakes, in the
recorded order. ``tests/support/transcripts.py`` orders them by what arrived, never by a clock, and every
request is sent once the requests the reference answered before it have their first answer, so requests
that raced in the recording are taken in the recorded order. Each exchange's answers are compared as text,
per request id and in order: what two servers cannot share is blanked (push times, backendIds).

livesync differs from the 0.4 reference on purpose in a few ways (README, "Deliberate differences from the 0.4
reference"); ``DELIBERATE`` lists those the recording shows, with their reasons, and each turns the recorded
answers into livesync's. Frames the recorder captured after the client had closed its socket are not
expected (no client can receive them).
"""

import json
import re

import pytest

from livesync_project.asgi import application
from tests.support.transcripts import (
    Action,
    ReplaySocket,
    http_exchange,
    media_type,
    query_string,
    refused_handshake,
    run_timeline,
    scenarios_0_4,
    split_url,
)

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

AUTH_TOKEN = "insecure-token-change-me"
PING = '{"_tag":"Ping"}'
PONG = '{"_tag":"Pong"}'
_CREATED_AT = re.compile(r'"createdAt":"[0-9T:.\-]+Z"')
_BACKEND_ID = re.compile(r'"(?:backendId|expected)":"([^"]+)"')
# Headers of a recorded request that belong to its connection, not to the request.
HOP_BY_HOP = {"host", "connection", "content-length", "accept-encoding"}


async def validate_like_the_recording(payload, context):
    """The recording's validatePayload: a payload must carry the token; a request without one passes."""
    if payload is not None and (not isinstance(payload, dict) or payload.get("authToken") != AUTH_TOKEN):
        raise ValueError("Invalid auth token")


@pytest.fixture(autouse=True)
def reference_configuration(settings):
    settings.LIVESYNC = {
        **settings.LIVESYNC,
        "VALIDATE_PAYLOAD": "tests.protocol.test_v04_transcripts.validate_like_the_recording",
        "ENABLE_CORS": True,
    }


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text_of(frame):
    return frame.get("text") if "text" in frame else compact(frame["json"])


def normalize(text, backend_ids):
    text = _CREATED_AT.sub('"createdAt":"<createdAt>"', text)
    for backend_id in backend_ids:
        text = text.replace(f'"{backend_id}"', '"<backendId>"')
    return text


def backend_ids_in(texts):
    return {found for text in texts for found in _BACKEND_ID.findall(text)} - {"stale-backend-id"}


# The deliberate differences the recording shows. Each changes the expected answers of one exchange (a list of
# ``(t, text)``) into livesync's.

PLAIN_INTERRUPT = compact({"_tag": "Failure", "cause": {"_tag": "Interrupt", "fiberId": {"_tag": "None"}}})


def _broadcasts_go_only_to_live_pulls(answers, sent):
    """The reference also sends each broadcast to the pulls of the socket that already ended."""
    ended, kept = set(), []
    for t, text in answers:
        frame = json.loads(text)
        if frame.get("_tag") == "Chunk" and frame["requestId"] in ended:
            continue
        if frame.get("_tag") == "Exit":
            ended.add(frame["requestId"])
        kept.append((t, text))
    return kept


def _an_interrupted_pull_ends_with_a_plain_interrupt(answers, sent):
    changed = []
    for t, text in answers:
        frame = json.loads(text)
        if frame.get("_tag") == "Exit" and '"Interrupt"' in text and frame["exit"].get("_tag") == "Failure":
            text = text[: text.index('"exit":')] + f'"exit":{PLAIN_INTERRUPT}}}'
        changed.append((t, text))
    return changed


SYNTAX_ERROR = re.compile(
    re.escape('{"_tag":"Defect","defect":{"name":"SyntaxError","message":"') + r'(?:[^"\\]|\\.)+"\}\}'
)


def _a_syntax_error_carries_msgspecs_message(answers, sent):
    return [(t, SYNTAX_ERROR if '"name":"SyntaxError"' in text else text) for t, text in answers]


# Name -> (the README's reason, what it makes of an exchange's recorded answers).
DELIBERATE = {
    "live pulls only": (
        "broadcasts go only to live pulls; the reference also sends them to pulls that ended",
        _broadcasts_go_only_to_live_pulls,
    ),
    "plain Interrupt": (
        "an interrupted pull ends with a plain Interrupt Cause, not the reference's tree of fiber ids",
        _an_interrupted_pull_ends_with_a_plain_interrupt,
    ),
    "msgspec's SyntaxError": (
        "a SyntaxError defect carries msgspec's message, not V8's JSON.parse text",
        _a_syntax_error_carries_msgspecs_message,
    ),
}


def exchange_ids():
    return [(name, index) for name, scenario in scenarios_0_4().items() for index in range(len(scenario["exchanges"]))]


def test_every_exchange_of_the_recording_is_replayed():
    assert len(exchange_ids()) == 42


_replayed = {}


@pytest.mark.parametrize(("name", "index"), exchange_ids())
async def test_exchange_matches_the_reference(name, index, store_id):
    if name not in _replayed:
        # One replay per scenario serves all its exchanges: they share a store and follow each other.
        _replayed[name] = await replay(scenarios_0_4()[name], store_id)
    ours, expected = _replayed[name][index]
    assert ours == expected


async def replay(scenario, store_id):
    """Replays the scenario; returns ``[(ours, expected)]`` per exchange."""
    exchanges = scenario["exchanges"]
    recorded_store = scenario["storeId"]
    answered = [_recorded_answers(exchange) for exchange in exchanges]
    reference_ids = backend_ids_in(
        [text for answers in answered for _, text in answers if isinstance(text, str)]
        + [compact(exchange["response"]) for exchange in exchanges if exchange["kind"] == "http"]
    )
    sockets, http_answers, actions = {}, {}, []
    http_texts = []

    def our_ids():
        """The backendId livesync gave, once it has given one."""
        return backend_ids_in([text for socket in sockets.values() for text in socket.received] + http_texts)

    def ours_for(text):
        text = text.replace(recorded_store, store_id)
        for our_id in our_ids():
            for reference_id in reference_ids:
                text = text.replace(reference_id, our_id)
        return text

    def url(exchange):
        path, query = split_url(exchange["url"])
        return path, query_string([(key, store_id if key == "storeId" else value) for key, value in query])

    expected_times = {}
    for index, exchange in enumerate(exchanges):
        if exchange["kind"] == "http":
            call = _http_call(index, exchange, url, ours_for, http_answers, http_texts)
            actions.append(Action(exchange["t"], call=call))
        elif "rejected" in exchange:
            actions.append(Action(exchange["t"], call=_refusal(index, exchange, url, http_answers)))
        else:
            path, query = url(exchange)
            sockets[index] = ReplaySocket(application, path, query, PING, PONG)
            expected_times[index] = [t for t, _ in answered[index]]
            actions.append(Action(exchange["t"], index, call=sockets[index].open))
            for frame in exchange["frames"]:
                if frame["dir"] == "c2s":
                    actions.append(Action(frame["t"], index, text=_later(ours_for, text_of(frame))))
            for close in exchange["closes"]:
                if close["by"] == "client":
                    actions.append(Action(close["t"], index, close=True))
    _wait_for_earlier_answers(actions, answered)

    await run_timeline(actions, sockets, expected_times)
    ours_ids = our_ids()

    results = []
    for index, exchange in enumerate(exchanges):
        if exchange["kind"] == "ws" and "rejected" not in exchange:
            ours = by_request([normalize(text, ours_ids) for text in sockets[index].received])
            expected = by_request([_normalized(text, reference_ids) for _, text in answered[index]])
            results.append((ours, _matched(ours, expected)))
        else:
            ours, expected = http_answers[index], _recorded_http(exchange, reference_ids)
            if isinstance(ours[2], list):
                ours = (*ours[:2], [normalize(text, ours_ids) for text in ours[2]], *ours[3:])
            results.append((ours, _matched_http(ours, expected)))
    return results


def _normalized(text, backend_ids):
    return text if isinstance(text, re.Pattern) else normalize(text, backend_ids)


def _later(ours_for, text):
    """The frame as it is sent: with our storeId, and our backendId once livesync has given one."""
    return lambda: ours_for(text)


def _recorded_answers(exchange):
    """``[(t, text)]`` of what the reference answered on a ws exchange that the client could receive, with the
    deliberate differences applied."""
    if exchange["kind"] != "ws" or "rejected" in exchange:
        return []
    closed = min((close["t"] for close in exchange["closes"] if close["by"] == "client"), default=float("inf"))
    answers = [
        (frame["t"], text_of(frame)) for frame in exchange["frames"] if frame["dir"] == "s2c" and frame["t"] < closed
    ]
    sent = [text_of(frame) for frame in exchange["frames"] if frame["dir"] == "c2s"]
    for _, change in DELIBERATE.values():
        answers = change(answers, sent)
    return answers


def _wait_for_earlier_answers(actions, answered):
    """Each request is sent once every request sent before it that the reference answered first has its first
    answer: the reference took them in that order."""
    firsts = []  # (time of the first answer, ws exchange index, its position among the expected answers)
    for action in sorted(actions, key=lambda action: action.t):
        if action.key is None or action.text is None:
            continue
        frame = json.loads(action.text()) if action.text().startswith("{") else {}
        if frame.get("_tag") != "Request":
            continue
        first = next(
            ((position, t) for position, (t, text) in enumerate(answered[action.key]) if _answers(text, frame["id"])),
            None,
        )
        if first is None:
            continue
        for answered_at, key, position in firsts:
            if answered_at < first[1]:
                action.after[key] = max(action.after.get(key, 0), position + 1)
        firsts.append((first[1], action.key, first[0]))


def _answers(text, request_id):
    return not isinstance(text, re.Pattern) and json.loads(text).get("requestId") == request_id


def _http_call(index, exchange, url, ours_for, http_answers, http_texts):
    async def call():
        path, query = url(exchange)
        request = exchange["request"]
        body = ours_for(text_of(request)).encode() if request else b""
        headers = [(key, value) for key, value in exchange["requestHeaders"].items() if key not in HOP_BY_HOP]
        status, answered, text = await http_exchange(application, exchange["method"], path, query, headers, body)
        http_texts.append(text)
        cors = _cors(answered) if exchange["method"] == "OPTIONS" else {}
        http_answers[index] = (status, media_type(answered.get("content-type")), _body(text), cors)

    return call


def _refusal(index, exchange, url, http_answers):
    async def call():
        path, query = url(exchange)
        status, body = await refused_handshake(application, path, query)
        http_answers[index] = (status, "", body, {})

    return call


def _body(text):
    """An answer's body: each reply of a JSON array as text, or the text itself."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return [compact(reply) for reply in parsed] if isinstance(parsed, list) else text


def _cors(headers):
    return {key: value for key, value in headers.items() if key.startswith("access-control-")}


def _recorded_http(exchange, reference_ids):
    if "rejected" in exchange:
        return (exchange["rejected"]["status"], "", exchange["rejected"]["body"], {})
    response = exchange["response"]
    if "json" in response:
        answers = [(0, compact(reply)) for reply in response["json"]]
        for _, change in DELIBERATE.values():
            answers = change(answers, [])
        body = [_normalized(text, reference_ids) for _, text in answers]
    elif response["text"].startswith("<<undecodable gzip body"):
        body = ""  # the recorder's note for an empty gzip stream: the reference sent no body
    else:
        body = response["text"]
    headers = exchange["responseHeaders"]
    # The CORS headers of a preflight; the reference added none to its other answers, livesync (CORS on) does.
    cors = _cors(headers) if exchange["method"] == "OPTIONS" else {}
    return (exchange["status"], media_type(headers.get("content-type")), body, cors)


def by_request(texts):
    """Answers grouped by requestId (connection-level ones, Pong and Defect, under None), each group in order."""
    groups = {}
    for text in texts:
        key = None if isinstance(text, re.Pattern) else json.loads(text).get("requestId")
        groups.setdefault(key, []).append(text)
    return groups


def _matched(ours, expected):
    """``expected`` with each pattern replaced by the answer of ours at its place that it matches."""
    return {key: _matched_list(ours.get(key, []), answers) for key, answers in expected.items()}


def _matched_list(ours, expected):
    ours = [*ours, *[None] * len(expected)]
    return [
        our if isinstance(wanted, re.Pattern) and our is not None and wanted.fullmatch(our) else wanted
        for our, wanted in zip(ours, expected, strict=False)
    ]


def _matched_http(ours, expected):
    if isinstance(expected[2], list) and isinstance(ours[2], list):
        return (*expected[:2], _matched_list(ours[2], expected[2]), *expected[3:])
    return expected
