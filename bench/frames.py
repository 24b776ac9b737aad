"""The exact text the LiveStore 0.3.1 client (`makeCfSync`) puts on the wire, built without the client.

`python -m bench.verify_frames` checks byte for byte that these functions produce what the real client
sends (socket URL, `PullReq`, `Ping`, `PushReq` with the todo app's events); the load generator sends only
frames built here.
"""

import json
import string

AUTH_TOKEN = "insecure-token-change-me"
PAYLOAD = {"authToken": AUTH_TOKEN}
REQUEST_ID_LENGTH = 21  # the client's request ids are 21-character nanoids

compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_ALNUM = frozenset(string.ascii_letters + string.digits)
_URI_COMPONENT_SAFE = _ALNUM | set("-_.!~*'()")  # what JavaScript's encodeURIComponent leaves alone
_FORM_SAFE = _ALNUM | set("*-._")  # what URLSearchParams leaves alone (and space becomes "+")


def _percent(text, safe, space=None):
    out = []
    for char in text:
        if char in safe:
            out.append(char)
        elif char == " " and space:
            out.append(space)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode())
    return "".join(out)


def encode_uri_component(text):
    return _percent(text, _URI_COMPONENT_SAFE)


def form_encode(text):
    return _percent(text, _FORM_SAFE, space="+")


def store_url(base_url, store_id, payload=PAYLOAD):
    """``{base}/websocket?storeId=…&payload=…`` as the client builds it: ``new URLSearchParams({storeId,
    payload: encodeURIComponent(JSON.stringify(payload))})``, so the payload is encoded twice."""
    query = "storeId=" + form_encode(store_id)
    if payload is not None:
        query += "&payload=" + form_encode(encode_uri_component(compact(payload)))
    return f"{base_url}/websocket?{query}"


def request_id(prefix, number):
    """A request id as long as the client's nanoids, from which ``number`` can be read back."""
    return f"{prefix}{number:0{REQUEST_ID_LENGTH - len(prefix)}d}"


def todo_event(seq_num, client_id, session_id, todo_id=None):
    """One `v1.TodoCreated` event, encoded as the client encodes it (field order included)."""
    todo_id = todo_id or f"todo-{seq_num}"
    return {
        "name": "v1.TodoCreated",
        "args": {"id": todo_id, "text": f"todo {todo_id}"},
        "seqNum": seq_num,
        "parentSeqNum": seq_num - 1,
        "clientId": client_id,
        "sessionId": session_id,
    }


def push_req(req_id, events):
    return compact({"_tag": "WSMessage.PushReq", "requestId": req_id, "batch": events})


def todo_push(req_id, first_seq, count, client_id="bench", session_id="bench-session"):
    """`PushReq` of ``count`` todo events with seqNums ``first_seq``… (parent ``first_seq - 1``)."""
    return push_req(req_id, [todo_event(n, client_id, session_id) for n in range(first_seq, first_seq + count)])


def pull_req(req_id, cursor=None):
    """`PullReq`; the client omits ``cursor`` on its first pull."""
    frame = {"_tag": "WSMessage.PullReq", "requestId": req_id}
    if cursor is not None:
        frame["cursor"] = cursor
    return compact(frame)


PING = compact({"_tag": "WSMessage.Ping", "requestId": "ping"})
