"""The 0.4 sync endpoint over HTTP: ``makeHttpSync`` POSTs one Effect RPC request per call (``?transport=http``).

The reply is always ``200`` with a JSON array of RPC messages: a pull's
``Chunk`` pages and its ``Exit``, or a push's or ping's ``Exit`` (the
reference's framing; the client treats anything else as UnknownError). A pull
is streamed as the array is written, so a long backlog costs one database read
of memory, not the whole reply. Refusals before any RPC (a Host or Origin not
served, a rejected payload, ``transport=ws`` without an upgrade, a body over
``MAX_MESSAGE_BYTES``) are text answers with the reference's status.

The request is checked (Host, Origin and CSRF, search params, validator) before
its body is read, and a body over ``MAX_MESSAGE_BYTES`` is refused from its
``Content-Length`` or, without one, as soon as it grows past the limit: an
unauthorised or oversized request costs no more than its headers and the
first chunk past the limit. (Daphne itself receives a whole request before it
hands it over; servers that stream the body, such as uvicorn, read no more.)

A plain ASGI application rather than a Channels consumer: a request needs no
channel of its own, and ``AsyncConsumer`` would create one per request.
"""

import asyncio
import uuid
from urllib.parse import parse_qs

from .. import conf, core, logcontext, metrics
from ..core import eventlog
from ..protocol.generations import V04
from ..server import handshake, mounts
from ..server.cors import cors_headers
from . import calls, codec

HTTP_TAGS = frozenset({codec.HTTP_PULL, codec.HTTP_PUSH, codec.HTTP_PING})


class RequestAbandoned(Exception):
    """The client disconnected before its request body arrived."""


class BodyTooLarge(Exception):
    """The request body grew past the limit while it was read."""


def header(scope, name):
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def transport_of(scope):
    """The ``transport`` query parameter (``ws`` / ``http`` for 0.4 sync requests), or None."""
    query = scope.get("query_string", b"")
    if b"transport=" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("transport")
    return values[0] if values else None


def declared_length(scope):
    """The request's ``Content-Length``, or None when it has none (or one that is not a number)."""
    value = header(scope, b"content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


async def read_body(receive, limit):
    """The request body; BodyTooLarge as soon as it exceeds ``limit`` bytes (the rest is not read)."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAbandoned
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise BodyTooLarge
        parts.append(body)
        if not message.get("more_body"):
            return b"".join(parts)


class V04HttpEndpoint:
    """``@livestore/sync-cf`` 0.4 ``makeHttpSync`` protocol at ``…?storeId=…&payload=…&transport=http``.

    ``V04HttpEndpoint(validate_payload=callable_or_import_string)`` overrides
    ``LIVESYNC["VALIDATE_PAYLOAD"]`` for one mount.
    """

    def __init__(self, validate_payload=None):
        conf.check_override("validate_payload", validate_payload)
        mounts.record("0.4 http", validate_payload)
        self.validate_payload = validate_payload

    async def __call__(self, scope, receive, send):
        logcontext.bind(request_id=uuid.uuid4().hex, generation=V04, client=logcontext.client_address(scope))
        reply = _Reply(send, cors_headers(header(scope, b"access-control-request-headers")))
        if scope["method"] == "OPTIONS" and conf.get("ENABLE_CORS"):
            # A preflight changes nothing and carries nothing: the reference answers it, for a host this serves.
            try:
                handshake.check_site(handshake.request_of(scope), None)
            except handshake.Refused as refused:
                await self._refuse(refused, scope, reply)
                return
            await reply.empty(204)
            return
        try:
            context = await handshake.check(
                scope.get("query_string", b""),
                handshake.scope_origin(scope),
                scope,
                self.validate_payload,
                generation=V04,
                csrf=True,
            )
        except handshake.Refused as refused:
            await self._refuse(refused, scope, reply)
            return
        metrics.HANDSHAKES.labels(V04, "http", "accepted").inc()
        if transport_of(scope) == "ws":
            await reply.text(426, "Durable Object expected Upgrade: websocket")
            return
        limit = conf.get("MAX_MESSAGE_BYTES")
        declared = declared_length(scope)
        try:
            if declared is not None and declared > limit:
                raise BodyTooLarge
            body = await read_body(receive, limit)
        except RequestAbandoned:
            return
        except BodyTooLarge:
            await reply.text(413, f"Request too large: more than {limit} bytes")
            return
        eventlog.note_client(context.store_id, V04)
        await self._call(context, body, reply)

    async def _refuse(self, refused, scope, reply):
        handshake.log_refused(refused, scope, V04)
        metrics.HANDSHAKES.labels(V04, "http", refused.reason).inc()
        await reply.text(refused.status, refused.body)

    async def _call(self, context, body, reply):
        try:
            request = codec.decode(body)
        except codec.InvalidRpcMessage as exc:
            await reply.messages([codec.Defect(defect=exc.defect)])
            return
        if type(request) is not codec.Request:
            # Acks, Interrupts and Pings belong to streams and sockets: over http there is nothing to answer.
            await reply.messages([])
            return
        try:
            payload = codec.decode_payload(request, HTTP_TAGS)
        except codec.UnknownRpc as exc:
            await reply.messages([codec.Defect(defect=str(exc))])
            return
        except codec.InvalidPayload as exc:
            await reply.messages([codec.died(request.id, str(exc))])
            return
        if request.tag == codec.HTTP_PING:
            await reply.messages([calls.ping(request.id)])
        elif request.tag == codec.HTTP_PUSH:
            # Shielded: a server shutdown must not cut a push between its commit and its answer.
            await asyncio.shield(
                calls.push(context, request.id, payload, lambda exit_message: reply.messages([exit_message]))
            )
        else:
            await self._pull(context, request.id, payload, reply)

    async def _pull(self, context, request_id, payload, reply):
        await reply.start_array()
        try:
            async for frame, _last in calls.pull_frames(context, request_id, payload):
                await reply.element(frame)
            outcome = codec.success(request_id)
        except core.PullFailed as failed:
            outcome = calls.exit_of(request_id, failed.outcome)
        await reply.end_array(codec.encode(outcome))


class _Reply:
    """Writes one HTTP response: a text, an empty answer, or a JSON array written element by element."""

    def __init__(self, send, extra_headers):
        self.send = send
        self.headers = [(name.encode(), value.encode()) for name, value in extra_headers.items()]
        self.separator = b""

    async def _start(self, status, content_type=None):
        headers = list(self.headers)
        if content_type is not None:
            headers.append((b"content-type", content_type))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def text(self, status, text):
        await self._start(status, b"text/plain;charset=UTF-8")
        await self.send({"type": "http.response.body", "body": text.encode()})

    async def empty(self, status):
        await self._start(status)
        await self.send({"type": "http.response.body", "body": b""})

    async def messages(self, messages):
        await self._start(200, b"application/json")
        body = b"[" + b",".join(codec.encode_bytes(message) for message in messages) + b"]"
        await self.send({"type": "http.response.body", "body": body})

    async def start_array(self):
        await self._start(200, b"application/json")
        await self.send({"type": "http.response.body", "body": b"[", "more_body": True})

    async def element(self, text):
        await self.send({"type": "http.response.body", "body": self.separator + text.encode(), "more_body": True})
        self.separator = b","

    async def end_array(self, text):
        await self.send({"type": "http.response.body", "body": self.separator + text.encode() + b"]"})
