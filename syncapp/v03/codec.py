"""The LiveStore ``@livestore/sync-cf`` 0.3 wire protocol: frame types, strict decoding, encoding.

Frames are JSON text messages tagged by ``_tag``, decoded and encoded with
msgspec (see ``syncapp.protocol.wire`` for why). The error texts are the reference's,
byte for byte.
"""

import hashlib
from typing import Literal

import msgspec

from ..protocol import pages, wire
from ..protocol.wire import Event, InvalidBatch, SeqNum, prepare_batch

# A frame may nest as deeply as a push's args may (wire.MAX_ARGS_DEPTH) under the push's object, batch and
# event: checked on the frame's text, before msgspec, whose depth is the interpreter's recursion limit.
FRAME_DEPTH = wire.MAX_ARGS_DEPTH + 3

# Client -> server


class PullReq(msgspec.Struct, tag_field="_tag", tag="WSMessage.PullReq"):
    requestId: str
    cursor: SeqNum | None = None


class PushReq(msgspec.Struct, tag_field="_tag", tag="WSMessage.PushReq"):
    requestId: str
    batch: list[Event]


class Ping(msgspec.Struct, tag_field="_tag", tag="WSMessage.Ping"):
    requestId: Literal["ping"]


class AdminResetRoomReq(msgspec.Struct, tag_field="_tag", tag="WSMessage.AdminResetRoomReq"):
    requestId: str
    adminSecret: str


class AdminInfoReq(msgspec.Struct, tag_field="_tag", tag="WSMessage.AdminInfoReq"):
    requestId: str
    adminSecret: str


ClientMessage = PullReq | PushReq | Ping | AdminResetRoomReq | AdminInfoReq

# Server -> client
#
# A pull makes a batch item, and its metadata, per event. Holding only strings, numbers and each other, they
# can be in no reference cycle: ``gc=False`` keeps them out of the garbage collector, whose collections
# they would otherwise set off many times per long pull (msgspec already leaves structs of strings untracked).


class CreatedAt(msgspec.Struct):
    createdAt: str


class Some(msgspec.Struct, tag_field="_tag", tag="Some", gc=False):
    """Effect Schema's encoded ``Option.some``; metadata is always present here."""

    value: CreatedAt


class PullResItem(msgspec.Struct, gc=False):
    eventEncoded: Event
    metadata: Some


class PullResRequestId(msgspec.Struct):
    context: Literal["pull", "push"]
    requestId: str


class PullRes(msgspec.Struct, tag_field="_tag", tag="WSMessage.PullRes"):
    batch: msgspec.Raw  # a JSON array of PullResItem
    requestId: PullResRequestId
    remaining: int


class PushAck(msgspec.Struct, tag_field="_tag", tag="WSMessage.PushAck"):
    requestId: str


class Error(msgspec.Struct, tag_field="_tag", tag="WSMessage.Error"):
    requestId: str
    message: str


class Pong(msgspec.Struct, tag_field="_tag", tag="WSMessage.Pong"):
    requestId: Literal["ping"] = "ping"


class AdminResetRoomRes(msgspec.Struct, tag_field="_tag", tag="WSMessage.AdminResetRoomRes"):
    requestId: str


class DurableObjectInfo(msgspec.Struct):
    durableObjectId: str


class AdminInfoRes(msgspec.Struct, tag_field="_tag", tag="WSMessage.AdminInfoRes"):
    requestId: str
    info: DurableObjectInfo


class _RequestIdOnly(msgspec.Struct):
    requestId: str | None = None


class InvalidFrame(ValueError):
    """A frame that is not a valid 0.3 client message; ``request_id`` is set when it could be read."""

    def __init__(self, message, request_id=None):
        super().__init__(message)
        self.request_id = request_id


_decoder = msgspec.json.Decoder(ClientMessage)
_request_id_decoder = msgspec.json.Decoder(_RequestIdOnly)
_encoder = msgspec.json.Encoder()


def decode(data):
    """Decode one client frame (str or bytes) into a message struct, or raise InvalidFrame.

    A push's batch goes through ``prepare_batch``. A frame nested deeper than
    FRAME_DEPTH is an invalid message like any other, not an error that ends
    the socket, on every Python.
    """
    if wire.nested_deeper(data, FRAME_DEPTH):
        raise InvalidFrame(f"Invalid message: {wire.TOO_DEEP}", request_id=_head_request_id(data))
    try:
        message = _decoder.decode(data)
        if type(message) is PushReq:
            prepare_batch(message.batch)
    except (msgspec.DecodeError, InvalidBatch) as exc:
        raise InvalidFrame(f"Invalid message: {exc}", request_id=_request_id(data)) from None
    return message


def peek_request_id(data):
    """The frame's ``requestId`` if it is a JSON object with a string one, else None."""
    return _head_request_id(data) if wire.nested_deeper(data, FRAME_DEPTH) else _request_id(data)


def _head_request_id(data):
    """The ``requestId`` of a frame too deep to decode, when it comes before anything nested (``wire.flat_head``):
    a push whose args are over the nesting limit fails as that push, rather than leave it waiting for a PushAck."""
    head = wire.flat_head(data)
    return None if head is None else _request_id(head)


def _request_id(data):
    try:
        return _request_id_decoder.decode(data).requestId
    except msgspec.DecodeError:
        return None


def encode(message):
    """Encode one server frame as the text the reference would send."""
    return _encoder.encode(message).decode()


def pull_item(event, created_at):
    """One ``PullRes`` batch item (``syncapp.protocol.pages`` encodes a frame's items together)."""
    return PullResItem(eventEncoded=event, metadata=Some(CreatedAt(created_at)))


def pull_res(batch, context, request_id, remaining):
    """A ``WSMessage.PullRes`` frame around ``batch``, its items already encoded (``pages.encoded_runs``)."""
    return PullRes(batch=batch, requestId=PullResRequestId(context=context, requestId=request_id), remaining=remaining)


def push_frames(batch, created_at, request_id):
    """The ``context: "push"`` PullRes frames announcing a committed ``batch``: one, unless it is too large
    for one frame (see ``syncapp.protocol.pages``)."""
    items = [pull_item(event, created_at) for event in batch]
    return [pull_res(run, "push", request_id, 0) for _, run in pages.encoded_runs(items)]


def durable_object_info(store_id):
    """The ``AdminInfoRes`` info of a store: a stable identifier in place of the Durable Object's id."""
    return DurableObjectInfo(durableObjectId=hashlib.sha256(store_id.encode()).hexdigest())


def parent_mismatch_message(received, expected):
    """The reference's exact text for a push whose first parent is not the store's head."""
    return f"Invalid parent event number. Received e{received} but expected e{expected}"
