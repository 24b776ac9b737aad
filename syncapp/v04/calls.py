"""The 0.4 RPCs, shared by the WebSocket consumer and the HTTP endpoint: the core's outcomes as Effect RPC.

``push`` commits through ``syncapp.core`` and hands its ``Exit`` to the
transport's ``send_exit``; ``pull_frames`` yields a pull's ``Chunk`` frames
and raises ``core.PullFailed`` with the outcome that ``failed_exit`` turns
into the answer. Transports only frame these replies: ws as separate frames,
http as one JSON array.
"""

from .. import core
from ..core.hooks import observe
from . import codec


def unknown_error(request_id, cause):
    """An Exit failing with ``UnknownError``: the client retries the request with backoff."""
    return codec.failure(request_id, codec.UnknownError(cause=cause))


def ping(request_id):
    return codec.success(request_id, codec.PONG_RESULT)


def exit_of(request_id, outcome):
    """The ``Exit`` answering a push or a pull that came to ``outcome``.

    A stale parent is ``ServerAheadError`` (the client waits for its live pull
    to bring the missing events, rebases and pushes again); a rejection or an
    outage is ``UnknownError``, as in the reference.
    """
    kind = type(outcome)
    if kind is core.Acknowledged:
        return codec.success(request_id, {})
    if kind is core.StaleParent:
        error = codec.ServerAheadError(minimumExpectedNum=outcome.head, providedNum=outcome.received)
        return codec.failure(request_id, error)
    if kind is core.ForeignBackend:
        return codec.failure(
            request_id, codec.BackendIdMismatchError(expected=outcome.expected, received=outcome.received)
        )
    return unknown_error(request_id, outcome.reason)


async def push(context, request_id, payload, send_exit, origin_socket=None):
    """Commit a push for the connection ``context``; ``await send_exit(exit)`` answers it.

    As in the reference, the push's events go to every live pull of the store, the pusher's own included,
    before its ``Exit``.
    """
    backend_id = payload.backendId.value if type(payload.backendId) is codec.SomeBackendId else None

    async def reply(outcome):
        exit_message = exit_of(request_id, outcome)
        await observe("ON_PUSH_RES", exit_message.exit, context)
        await send_exit(exit_message)

    request = core.PushRequest(request_id, payload.batch, payload, backend_id)
    await core.push(context, request, reply, origin_socket, announce_first=True)


def cursor_of(payload):
    """``(after, backend_id)`` of a pull's cursor; ``(0, None)`` for ``None``."""
    if type(payload.cursor) is codec.SomeCursor:
        return payload.cursor.value.eventSequenceNumber, payload.cursor.value.backendId
    return 0, None


def pull_frames(context, request_id, payload):
    """``(Chunk frame, last seqNum)`` for every event after the pull's cursor; raises core.PullFailed.

    An unknown store is created first, so that its (empty) page carries the
    backendId later pushes will be checked against; a cursor of another
    incarnation of the store fails with ``BackendIdMismatchError``.
    """
    after, expected_backend_id = cursor_of(payload)
    runs = core.pull(context, payload, after, codec.pull_item, codec.MAX_PAGE_EVENTS, True, expected_backend_id)
    return frames(runs, request_id, context)


async def frames(runs, request_id, context):
    """``(Chunk frame, last seqNum)`` per run: pages of ``MoreKnown {remaining}`` until the last, ``NoMore``."""
    async for run in runs:
        response = codec.pull_response(run.batch, run.backend_id, run.remaining)
        await observe("ON_PULL_RES", response, context)
        yield codec.chunk(request_id, [response]), run.last
