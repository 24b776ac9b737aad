"""The LiveStore ``@livestore/sync-cf`` 0.4 wire protocol: Effect RPC messages as JSON.

0.4 clients (``makeWsSync`` / ``makeHttpSync``) wrap the sync messages in Effect
RPC envelopes: ``Request`` / ``Ack`` / ``Interrupt`` / ``Ping`` from the client,
``Chunk`` / ``Exit`` / ``Pong`` / ``Defect`` from the server. The domain types
(events, pull responses, errors) are Effect Schema encodings: ``Option`` as
``{"_tag": "None"}`` / ``{"_tag": "Some", "value": …}``, typed errors with their
``_tag`` written last. msgspec decodes into typed structs and encodes fields
in declaration order, which reproduces the reference's bytes; events are
``syncapp.protocol.wire.Event``, as in 0.3 (the same six keys).

Pull responses are assembled from items encoded once each (``msgspec.Raw``):
a page is cut at 100 events or ~900 kB, and one broadcast page serves every
0.4 subscriber of the store, only the envelope's requestId differing.
"""

import re
from typing import Any

import msgspec

from ..protocol import pages, wire
from ..protocol.wire import Event, InvalidBatch, SeqNum, prepare_batch

# The reference's MAX_PULL_EVENTS_PER_MESSAGE in 0.4.0 (its byte limit is pages.MAX_PAGE_BYTES).
MAX_PAGE_EVENTS = 100

# A message may nest as deeply as a push's args may (wire.MAX_ARGS_DEPTH) under the Request, its payload, the
# batch and the event: checked on the text, before msgspec, whose depth is the interpreter's recursion limit.
FRAME_DEPTH = wire.MAX_ARGS_DEPTH + 4

WS_PULL = "SyncWsRpc.Pull"
WS_PUSH = "SyncWsRpc.Push"
HTTP_PULL = "SyncHttpRpc.Pull"
HTTP_PUSH = "SyncHttpRpc.Push"
HTTP_PING = "SyncHttpRpc.Ping"

# Effect Schema's description of each request payload, quoted by the reference when one does not decode.
_COMMON_FIELDS = "readonly storeId: string; readonly payload?: JsonValue | undefined"
_CURSOR_SCHEMA = (
    "(OptionEncoded<{ readonly backendId: @livestore/sync-cf:BackendId; readonly eventSequenceNumber: "
    "{ Int | filter } }> <-> Option<{ readonly backendId: @livestore/sync-cf:BackendId; "
    "readonly eventSequenceNumber: { Int | filter } }>)"
)
_BATCH_SCHEMA = "ReadonlyArray<LiveStoreEvent.Global.Encoded>"
_BACKEND_ID_SCHEMA = "(OptionEncoded<string> <-> Option<string>)"
SCHEMA_DESCRIPTIONS = {
    WS_PULL: f"{{ {_COMMON_FIELDS}; readonly live: boolean; readonly cursor: {_CURSOR_SCHEMA} }}",
    HTTP_PULL: f"{{ {_COMMON_FIELDS}; readonly cursor: {_CURSOR_SCHEMA} }}",
    WS_PUSH: f"{{ {_COMMON_FIELDS}; readonly batch: {_BATCH_SCHEMA}; readonly backendId: {_BACKEND_ID_SCHEMA} }}",
    HTTP_PUSH: f"{{ {_COMMON_FIELDS}; readonly batch: {_BATCH_SCHEMA}; readonly backendId: {_BACKEND_ID_SCHEMA} }}",
    HTTP_PING: f"{{ {_COMMON_FIELDS} }}",
}


# Client -> server envelopes


class Request(msgspec.Struct, tag_field="_tag", tag="Request"):
    """An RPC call; ``payload`` is decoded by ``decode_payload`` once ``tag`` is known."""

    id: str
    tag: str
    payload: msgspec.Raw
    headers: list = []


class Ack(msgspec.Struct, tag_field="_tag", tag="Ack"):
    requestId: str


class Interrupt(msgspec.Struct, tag_field="_tag", tag="Interrupt"):
    requestId: str


class Ping(msgspec.Struct, tag_field="_tag", tag="Ping"):
    pass


class _RequestHead(msgspec.Struct):
    """What a message too deep to decode is read for (``wire.flat_head``): whether it is a Request, and which."""

    kind: str | None = msgspec.field(default=None, name="_tag")
    id: str | None = None
    tag: str | None = None


# The payload of a Request nested deeper than FRAME_DEPTH (compared by identity): it is refused by
# ``decode_payload`` as that request's failure, not the connection's.
_TOO_DEEP_PAYLOAD = msgspec.Raw(b"null")


class Eof(msgspec.Struct, tag_field="_tag", tag="Eof"):
    pass


ClientMessage = Request | Ack | Interrupt | Ping | Eof


# Request payloads


class NoneOption(msgspec.Struct, tag_field="_tag", tag="None"):
    pass


class Cursor(msgspec.Struct):
    backendId: str
    eventSequenceNumber: SeqNum


class SomeCursor(msgspec.Struct, tag_field="_tag", tag="Some"):
    value: Cursor


class SomeBackendId(msgspec.Struct, tag_field="_tag", tag="Some"):
    value: str


class WsPullPayload(msgspec.Struct):
    storeId: str
    live: bool
    cursor: NoneOption | SomeCursor
    payload: Any = None


class HttpPullPayload(msgspec.Struct):
    storeId: str
    cursor: NoneOption | SomeCursor
    payload: Any = None


class PushPayload(msgspec.Struct):
    storeId: str
    batch: list[Event]
    backendId: NoneOption | SomeBackendId
    payload: Any = None


class PingPayload(msgspec.Struct):
    storeId: str
    payload: Any = None


_payload_decoders = {
    WS_PULL: msgspec.json.Decoder(WsPullPayload),
    HTTP_PULL: msgspec.json.Decoder(HttpPullPayload),
    WS_PUSH: msgspec.json.Decoder(PushPayload),
    HTTP_PUSH: msgspec.json.Decoder(PushPayload),
    HTTP_PING: msgspec.json.Decoder(PingPayload),
}


# Server -> client


class Pong(msgspec.Struct, tag_field="_tag", tag="Pong"):
    pass


class Chunk(msgspec.Struct, tag_field="_tag", tag="Chunk"):
    requestId: str
    values: list[msgspec.Raw]


class Success(msgspec.Struct, tag_field="_tag", tag="Success"):
    """``value`` is left out for streams, whose success type is void."""

    value: Any = msgspec.UNSET


class Failure(msgspec.Struct, tag_field="_tag", tag="Failure"):
    cause: Any


class Exit(msgspec.Struct, tag_field="_tag", tag="Exit"):
    requestId: str
    exit: Success | Failure


class Defect(msgspec.Struct, tag_field="_tag", tag="Defect"):
    defect: Any


class Fail(msgspec.Struct, tag_field="_tag", tag="Fail"):
    error: Any


class Die(msgspec.Struct, tag_field="_tag", tag="Die"):
    defect: Any


class InterruptCause(msgspec.Struct, tag_field="_tag", tag="Interrupt"):
    fiberId: NoneOption


class ServerAheadError(msgspec.Struct):
    minimumExpectedNum: int
    providedNum: int
    tag: str = msgspec.field(default="ServerAheadError", name="_tag")


class BackendIdMismatchError(msgspec.Struct):
    expected: str
    received: str
    tag: str = msgspec.field(default="BackendIdMismatchError", name="_tag")


class UnknownError(msgspec.Struct):
    cause: Any
    tag: str = msgspec.field(default="UnknownError", name="_tag")


# gc=False: as for the 0.3 batch items (see syncapp.v03.codec).
class SyncMetadata(msgspec.Struct, tag_field="_tag", tag="SyncMessage.SyncMetadata"):
    createdAt: str


class SomeMetadata(msgspec.Struct, tag_field="_tag", tag="Some", gc=False):
    value: SyncMetadata


class PullItem(msgspec.Struct, gc=False):
    eventEncoded: Event
    metadata: SomeMetadata


class NoMore(msgspec.Struct, tag_field="_tag", tag="NoMore"):
    pass


class MoreKnown(msgspec.Struct, tag_field="_tag", tag="MoreKnown"):
    remaining: int


class PullResponse(msgspec.Struct):
    batch: msgspec.Raw  # a JSON array of PullItem
    pageInfo: NoMore | MoreKnown
    backendId: str


PONG_RESULT = {"_tag": "SyncMessage.Pong"}


class InvalidRpcMessage(ValueError):
    """A frame or body that is not an RPC message: answered with a connection-level Defect."""

    def __init__(self, defect):
        super().__init__(str(defect))
        self.defect = defect


class InvalidPayload(ValueError):
    """A request whose payload does not match its schema: answered with an Exit Die for that request."""


class UnknownRpc(ValueError):
    """A request for an RPC this endpoint does not have."""


_decoder = msgspec.json.Decoder(ClientMessage)
_head_decoder = msgspec.json.Decoder(_RequestHead)
_encoder = msgspec.json.Encoder()


def decode(data):
    """Decode one client message (str or bytes), or raise InvalidRpcMessage with the Defect to send.

    A message nested deeper than FRAME_DEPTH is not decoded. When it is a
    Request whose ``id`` and ``tag`` come before anything nested, as clients
    write them, it is returned with a payload that ``decode_payload`` refuses,
    so only that request fails; otherwise it is a Defect.
    """
    if wire.nested_deeper(data, FRAME_DEPTH):
        head = _request_head(data)
        if head is None:
            raise InvalidRpcMessage({"name": "SyntaxError", "message": wire.TOO_DEEP})
        return Request(id=head.id, tag=head.tag, payload=_TOO_DEEP_PAYLOAD)
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidRpcMessage({"name": "SyntaxError", "message": str(exc)}) from None


def _request_head(data):
    head = wire.flat_head(data)
    try:
        head = None if head is None else _head_decoder.decode(head)
    except msgspec.DecodeError:
        return None
    return head if head is not None and head.kind == "Request" and head.id is not None and head.tag else None


def decode_payload(request, allowed_tags):
    """The typed payload of ``request``; UnknownRpc or InvalidPayload when it cannot be served.

    A push's batch goes through ``wire.prepare_batch``, as a 0.3 push does:
    the same events are refused, and stored the same way, on every transport.
    """
    if request.tag not in allowed_tags:
        raise UnknownRpc(f"Unknown request tag: {request.tag}")
    if request.payload is _TOO_DEEP_PAYLOAD:
        raise InvalidPayload(f"{SCHEMA_DESCRIPTIONS[request.tag]}\n└─ {wire.TOO_DEEP}")
    try:
        payload = _payload_decoders[request.tag].decode(request.payload)
        if type(payload) is PushPayload:
            prepare_batch(payload.batch)
            if type(payload.backendId) is SomeBackendId and "\x00" in payload.backendId.value:
                raise InvalidBatch("`$.backendId` contains a NUL character")
    except msgspec.DecodeError as exc:
        raise InvalidPayload(_effect_style_error(request.tag, str(exc))) from None
    except InvalidBatch as exc:
        raise InvalidPayload(f"{SCHEMA_DESCRIPTIONS[request.tag]}\n└─ {exc}") from None
    return payload


# A msgspec location such as ``batch[0].seqNum``: keys and array indexes.
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _effect_style_error(tag, detail):
    """A schema error in the shape Effect Schema prints (the reference's text for a missing key)."""
    path = detail.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in detail else ""
    if detail.startswith("Object missing required field `"):
        field = detail.split("`")[1]
        location = f"{path}.{field}" if path else field
        problem = "is missing"
    else:
        location, problem = path, detail.split(" - at `")[0]
    keys = "".join(f"[{index}]" if index else f'["{key}"]' for key, index in _PATH_PART.findall(location))
    return f"{SCHEMA_DESCRIPTIONS[tag]}\n└─ {keys or '[]'}\n   └─ {problem}"


def encode(message):
    """Encode one server message as text."""
    return _encoder.encode(message).decode()


def encode_bytes(message):
    return _encoder.encode(message)


def pong():
    return encode(Pong())


def chunk(request_id, encoded_responses):
    """A Chunk frame around PullResponses already encoded (``msgspec.Raw``)."""
    return encode(Chunk(requestId=request_id, values=encoded_responses))


def chunk_around(request_id, response_text):
    """A Chunk frame around one PullResponse given as JSON text (a broadcast page shared by subscribers)."""
    return f'{{"_tag":"Chunk","requestId":{encode(request_id)},"values":[{response_text}]}}'


def success(request_id, value=msgspec.UNSET):
    return Exit(requestId=request_id, exit=Success(value=value))


def failure(request_id, error):
    """An Exit failing with one of the typed errors (ServerAheadError, BackendIdMismatchError, UnknownError)."""
    return Exit(requestId=request_id, exit=Failure(cause=Fail(error=error)))


def died(request_id, defect):
    return Exit(requestId=request_id, exit=Failure(cause=Die(defect=defect)))


def interrupted(request_id):
    return Exit(requestId=request_id, exit=Failure(cause=InterruptCause(fiberId=NoneOption())))


def pull_item(event, created_at):
    """One pull-response batch item (``syncapp.protocol.pages`` encodes a page's items together)."""
    return PullItem(eventEncoded=event, metadata=SomeMetadata(SyncMetadata(createdAt=created_at)))


def pull_response(batch, backend_id, remaining):
    """One encoded PullResponse around ``batch``, its items already encoded (``pages.encoded_runs``):
    ``MoreKnown{remaining}`` while events remain, else ``NoMore``."""
    page_info = MoreKnown(remaining=remaining) if remaining > 0 else NoMore()
    return msgspec.Raw(_encoder.encode(PullResponse(batch=batch, pageInfo=page_info, backendId=backend_id)))


def live_pages(batch, created_at, backend_id):
    """The ``NoMore`` PullResponses a live subscriber receives for one committed ``batch``."""
    items = [pull_item(event, created_at) for event in batch]
    return [pull_response(run, backend_id, 0) for _, run in pages.encoded_runs(items, MAX_PAGE_EVENTS)]
