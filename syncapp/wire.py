"""What both protocol generations' codecs share: LiveStore's encoded event, its checks, its JSON.

0.3 frames and 0.4 RPC payloads carry the same event (``AnyEncodedGlobal`` in
0.3, ``LiveStoreEvent.Global.Encoded`` in 0.4: the same six keys), refused
and compacted the same way on every transport, so that what is stored never
depends on which client sent it. msgspec is the codec throughout: it decodes
straight into typed structs (a string ``seqNum`` or a missing ``clientId`` is
a decode error, not a value that reaches storage), it encodes fields in
declaration order (which reproduces the reference's key order byte for
byte), and ``msgspec.Raw`` carries each event's ``args`` through as the
client's own JSON text, so a push is stored and broadcast without
re-encoding its payloads. A leaf module: it imports nothing of syncapp.
"""

from typing import Annotated

import msgspec

# JavaScript's largest safe integer: the client's sequence numbers are JS numbers.
MAX_SEQ_NUM = 2**53 - 1
SeqNum = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ_NUM)]

NULL_ARGS = msgspec.Raw(b"null")
UNSET = msgspec.UNSET
Raw = msgspec.Raw


class Event(msgspec.Struct, kw_only=True):
    """One encoded event; ``args`` stays UNSET (and is not re-sent) when the client sent none."""

    name: str
    args: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    seqNum: SeqNum
    parentSeqNum: SeqNum
    clientId: str
    sessionId: str


class InvalidBatch(ValueError):
    """A push whose events no backend could store as sent (see ``prepare_batch``)."""


# Event fields stored as database text. PostgreSQL text cannot hold NUL, and a value one backend
# refuses must be refused on every backend, before it reaches a transaction shared with other pushes.
_TEXT_FIELDS = ("name", "clientId", "sessionId")


def compact(raw):
    """JSON text (``msgspec.Raw``) as the client's ``JSON.stringify`` writes it: no whitespace.

    What is stored and echoed then does not depend on a sender's formatting,
    whether the event came from a client or from an imported log.
    """
    return msgspec.Raw(msgspec.json.format(raw, indent=-1))


def prepare_batch(batch):
    """Refuse events no backend could store as sent, and compact their ``args``; raises InvalidBatch.

    A NUL inside ``args`` is JSON's ``\\u0000`` escape, which every backend
    stores and returns as is.
    """
    for index, event in enumerate(batch):
        for field in _TEXT_FIELDS:
            if "\x00" in getattr(event, field):
                raise InvalidBatch(f"`$.batch[{index}].{field}` contains a NUL character")
        if event.args is not msgspec.UNSET:
            event.args = compact(event.args)


def args_text(event):
    """An event's args as stored: the client's JSON text, or None when it sent none."""
    return None if event.args is msgspec.UNSET else bytes(event.args).decode()


_encoder = msgspec.json.Encoder()


def to_builtins(message):
    """A decoded or encoded message as plain dicts and lists (``Raw`` args included), the shape hooks receive."""
    return msgspec.json.decode(_encoder.encode(message))
