"""The text the LiveStore 0.4.0 ws client (`makeWsSync`) puts on the wire, built without the client.

Effect RPC messages as JSON, one per text frame (the 0.4 protocol notes, sections 3-5).
Keys come in the client's order, which differs between the two requests: the streaming Pull has its
``traceId`` before ``payload``, Push after it. The trace and span ids are those of LiveStore's no-op tracer
(the default, as in the recorded app): a fixed prefix and a 25-character cuid, with ``sampled: false``.
``python -m bench.verify_frames04`` checks these builders against the recorded real client's frames.
"""

from bench.frames import PAYLOAD, compact, encode_uri_component, form_encode

TRACE_PREFIX = "livestore-noop-trace-id"
SPAN_PREFIX = "livestore-noop-span-id"
PING = compact({"_tag": "Ping"})
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def store_url(base_url, store_id, payload=PAYLOAD):
    """``{base}/?storeId=…&payload=…&transport=ws``: the client appends ``?`` and ``URLSearchParams({storeId,
    payload: encodeURIComponent(JSON.stringify(payload)), transport})`` to the app's URL (whose empty path goes
    out as ``/``), so the payload is encoded twice."""
    query = "storeId=" + form_encode(store_id)
    if payload is not None:
        query += "&payload=" + form_encode(encode_uri_component(compact(payload)))
    return f"{base_url}/?{query}&transport=ws"


def cuid(number):
    """A 25-character lowercase cuid-shaped id (``c`` and 24 base-36 digits) from which ``number`` is readable."""
    digits = []
    for _ in range(24):
        number, digit = divmod(number, 36)
        digits.append(_BASE36[digit])
    return "c" + "".join(reversed(digits))


def _option(value):
    return {"_tag": "None"} if value is None else {"_tag": "Some", "value": value}


def pull(request_id, store_id, live=True, cursor=None, backend_id=None, payload=PAYLOAD):
    """``SyncWsRpc.Pull``; ``cursor`` None pulls from the start (the client's first pull, ``live: true``)."""
    body = {"storeId": store_id}
    if payload is not None:
        body["payload"] = payload
    body["live"] = live
    body["cursor"] = _option(None if cursor is None else {"backendId": backend_id, "eventSequenceNumber": cursor})
    return compact(
        {
            "_tag": "Request",
            "id": request_id,
            "tag": "SyncWsRpc.Pull",
            "traceId": TRACE_PREFIX + cuid(2 * int(request_id)),
            "payload": body,
            "spanId": SPAN_PREFIX + cuid(2 * int(request_id) + 1),
            "sampled": False,
            "headers": [],
        }
    )


def push(request_id, store_id, events, backend_id=None, payload=PAYLOAD):
    """``SyncWsRpc.Push`` of ``events`` (encoded as in 0.3: ``bench.frames.todo_event``); ``backend_id`` is the
    one the client last saw in a pull, None before its first."""
    body = {"storeId": store_id}
    if payload is not None:
        body["payload"] = payload
    body["batch"] = events
    body["backendId"] = _option(backend_id)
    return compact(
        {
            "_tag": "Request",
            "id": request_id,
            "tag": "SyncWsRpc.Push",
            "payload": body,
            "traceId": TRACE_PREFIX + cuid(2 * int(request_id)),
            "spanId": SPAN_PREFIX + cuid(2 * int(request_id) + 1),
            "sampled": False,
            "headers": [],
        }
    )


def ack(request_id):
    """What the client sends after each ``Chunk`` of a stream it still consumes (broadcast chunks included)."""
    return compact({"_tag": "Ack", "requestId": request_id})
