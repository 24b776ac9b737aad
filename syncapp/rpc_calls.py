"""The 0.4 RPCs themselves, shared by the WebSocket consumer and the HTTP endpoint.

Each call takes a decoded request payload and produces Effect RPC replies:
``push`` and ``ping`` return their ``Exit``; ``pull_responses`` yields the
encoded ``PullResponse`` pages of a catch-up and raises ``CallFailed`` (with
the ``Exit`` to send) when the pull cannot be served. Transports only frame
these replies: ws as separate frames, http as one JSON array.
"""

import logging

from django.db import DatabaseError

from . import eventlog, rpc_protocol, storage
from .generations import V04
from .hooks import HookRejected, observe, run_hook

logger = logging.getLogger("syncapp")


class CallFailed(Exception):
    """A request that ends in a failure ``Exit`` (carried as ``exit``)."""

    def __init__(self, exit_message):
        super().__init__(exit_message)
        self.exit = exit_message


def unknown_error(request_id, cause):
    """An Exit failing with ``UnknownError``: the client retries the request with backoff."""
    return rpc_protocol.failure(request_id, rpc_protocol.UnknownError(cause=cause))


def ping(request_id):
    return rpc_protocol.success(request_id, rpc_protocol.PONG_RESULT)


async def push(context, request_id, payload):
    """Commit a push for the connection ``context`` and announce it; the ``Exit`` to answer with.

    As in the reference: an empty batch succeeds without checks, the ON_PUSH
    hook runs before the backendId and head checks, and a batch whose parent
    is not the head fails with ``ServerAheadError`` (the client then waits for
    its live pull to bring the missing events, rebases and pushes again). A
    read-only connection's push, or one past the connection's limits, fails with ``UnknownError`` and
    writes nothing.
    """
    if not payload.batch:
        return rpc_protocol.success(request_id, {})
    refusal = context.push_refusal(len(payload.batch))
    if refusal is not None:
        return unknown_error(request_id, refusal)
    store_id = context.store_id
    backend_id = payload.backendId.value if type(payload.backendId) is rpc_protocol.SomeBackendId else None
    try:
        await run_hook("ON_PUSH", payload, rpc_protocol.to_builtins, context)
        appended = await eventlog.commit(store_id, payload.batch, backend_id, generation=V04)
    except storage.ParentMismatch as mismatch:
        reply = rpc_protocol.failure(
            request_id, rpc_protocol.ServerAheadError(minimumExpectedNum=mismatch.head, providedNum=mismatch.received)
        )
    except storage.BackendIdMismatch as mismatch:
        reply = rpc_protocol.failure(
            request_id, rpc_protocol.BackendIdMismatchError(expected=mismatch.expected, received=mismatch.received)
        )
    except (storage.PushRejected, HookRejected) as exc:
        reply = unknown_error(request_id, str(exc))
    except eventlog.StoreUnavailable as exc:
        logger.exception("push failed for store %r", store_id)
        reply = unknown_error(request_id, str(exc))
    else:
        written = payload.batch[appended.already_stored :]
        if written:
            await eventlog.announce(store_id, written, appended, request_id)
        reply = rpc_protocol.success(request_id, {})
    await observe("ON_PUSH_RES", reply.exit, rpc_protocol.to_builtins, context)
    return reply


def cursor_of(payload):
    """``(after, backend_id)`` of a pull's cursor; ``(0, None)`` for ``None``."""
    if type(payload.cursor) is rpc_protocol.SomeCursor:
        return payload.cursor.value.eventSequenceNumber, payload.cursor.value.backendId
    return 0, None


async def pull_responses(context, request_id, payload):
    """Yield ``(encoded PullResponse, last seqNum sent)`` for every event after the pull's cursor.

    Runs the ON_PULL hook and checks the cursor's backendId first; raises
    CallFailed (with the Exit to send) when the pull cannot be served.
    """
    after, expected_backend_id = cursor_of(payload)
    try:
        await run_hook("ON_PULL", payload, rpc_protocol.to_builtins, context)
    except HookRejected as exc:
        raise CallFailed(unknown_error(request_id, str(exc))) from None
    async for reply in pages_after(context.store_id, request_id, after, expected_backend_id, context):
        yield reply


async def pages_after(store_id, request_id, after, expected_backend_id=None, context=None):
    """Yield ``(encoded PullResponse, last seqNum sent)`` for every event after ``after``.

    Pages hold at most 100 events or ~900 kB; each carries ``MoreKnown
    {remaining}`` until the last, which is ``NoMore``; an empty backlog is one
    empty ``NoMore`` page (the client learns the backendId from it). Raises
    CallFailed for a foreign ``expected_backend_id`` or a database outage.
    """
    try:
        async for page in eventlog.reads(store_id, after, create=True):
            if expected_backend_id is not None and page.backend_id != expected_backend_id:
                error = rpc_protocol.BackendIdMismatchError(expected=page.backend_id, received=expected_backend_id)
                raise CallFailed(rpc_protocol.failure(request_id, error))
            expected_backend_id = None
            items = [rpc_protocol.encode_item(eventlog.wire_event(e), e.created_at) for e in page.events]
            sent = 0
            for run in rpc_protocol.split_items(items):
                sent += len(run)
                if run:
                    after = page.events[sent - 1].seq_num
                response = rpc_protocol.pull_response(run, page.backend_id, max(0, page.head - after))
                await observe("ON_PULL_RES", response, rpc_protocol.to_builtins, context)
                yield response, after
    except DatabaseError:
        logger.exception("pull failed for store %r", store_id)
        raise CallFailed(unknown_error(request_id, "Pull failed: the database is unavailable")) from None
