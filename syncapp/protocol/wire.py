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

import re
from typing import Annotated

import msgspec

# JavaScript's largest safe integer: the client's sequence numbers are JS numbers.
MAX_SEQ_NUM = 2**53 - 1
SeqNum = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ_NUM)]

# How deeply an event's args may nest arrays and objects (``[]`` is one level, ``[[]]`` two), on every
# Python and at every way in. msgspec and json have no limit of their own: they stop where the
# interpreter's recursion guard does (about 1,000 levels on 3.11, 10,000 on 3.13), and whatever reads args
# (the admin, hooks, followers) pays for depth. LiveStore's event schemas nest a few levels. A constant, not
# a setting: a log exported from one server must import into any other.
MAX_ARGS_DEPTH = 64
NESTING_LIMIT = f"the nesting limit is {MAX_ARGS_DEPTH} levels of arrays and objects in an event's args"
TOO_DEEP = f"JSON is nested too deeply: {NESTING_LIMIT}"

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


# Escaped backslashes and quotes, paired left to right as a JSON reader pairs them.
_QUOTING_ESCAPES = re.compile(rb'\\[\\"]')
_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_A_MARK = bytes(sorted(set(range(256)) - set(b'[]{}"')))


def nested_deeper(data, limit):
    """Whether JSON text (str, bytes or ``Raw``) nests arrays and objects more than ``limit`` levels deep.

    A scan of the text, not a parse: it neither recurses nor depends on the
    interpreter, and its passes run in C. Escaped quotes and backslashes go,
    then all but brackets and quotes, then strings (which usually hold no
    brackets), and the brackets left are peeled: a pass drops every innermost
    ``[]`` (one level), and once innermost pairs are few, a walk over the
    runs of ``[`` and ``]`` finds the highest level of what is left. Text
    that is not JSON may be called too deep where a decoder would find a
    syntax error, never the other way round.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif not isinstance(data, bytes):
        data = bytes(data)
    if b"\\" in data:
        data = _QUOTING_ESCAPES.sub(b"", data)
    marks = data.translate(_TO_SQUARE, _NOT_A_MARK)
    if marks.count(b"[") <= limit:
        return False
    if marks.count(b'"') == 2 * marks.count(b'""'):
        brackets = marks.translate(None, b'"')  # every string is "" here: none holds a bracket
    else:
        brackets = b"".join(marks.split(b'"')[::2])
    if b"[" * (limit + 1) in brackets:
        return True
    for peeled in range(limit + 1):
        if not brackets:
            return False
        rest = brackets.replace(b"[]", b"")
        if len(rest) * 16 > len(brackets) * 15:
            # Few innermost pairs: walking the runs costs less than peeling the rest a level at a time.
            return peeled + _highest(brackets) > limit
        brackets = rest
    return True


def _highest(brackets):
    """The highest level a string of brackets reaches, walked a ``[…[]…]`` run at a time (split at ``][``)."""
    pieces = brackets.split(b"][")
    last = len(pieces) - 1
    level = highest = 0
    for index, piece in enumerate(pieces):
        # Each piece is "[…[]…]": its own brackets, plus the "[" and "]" the split took at either side.
        opens = piece.count(b"[") + (index > 0)
        highest = max(highest, level + opens)
        level += 2 * opens - len(piece) - (index > 0) - (index < last)
    return highest


def args_too_deep(raw):
    """Whether an event's args nest deeper than MAX_ARGS_DEPTH (``nested_deeper``)."""
    return nested_deeper(raw, MAX_ARGS_DEPTH)


_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_FLAT_HEAD = re.compile(rb"\s*\{((?:\s*" + _STRING + rb"\s*:\s*(?:" + _STRING + rb'|[^\[\]{},"\s]+)\s*,)*)')


def flat_head(data):
    """The leading members of a JSON object whose values are not arrays or objects, as a JSON object, or None.

    How a frame too deep to decode is still answered by its requestId: the
    reference clients write it (and the 0.4 ``id`` and ``tag``) before the
    batch or payload, which is where anything deep is.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    match = _FLAT_HEAD.match(bytes(data))
    if match is None or not match[1]:
        return None
    return b"{" + match[1].rstrip().rstrip(b",") + b"}"


def args_text(event):
    """An event's args as stored: the client's JSON text, or None when it sent none."""
    return None if event.args is msgspec.UNSET else bytes(event.args).decode()


_encoder = msgspec.json.Encoder()


def to_builtins(message):
    """A decoded or encoded message as plain dicts and lists (``Raw`` args included), the shape hooks receive."""
    return msgspec.json.decode(_encoder.encode(message))
