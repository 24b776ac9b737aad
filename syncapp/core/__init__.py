"""The sync core both protocol generations call: a push and its outcome, paged reads, one subscriber.

A generation's transport decodes a frame, calls the core, and only translates
what comes back into its envelope (0.3 ``PushAck`` / ``WSMessage.Error``, 0.4
``Exit``), as the reference's transports all call its one ``push``
(``@livestore/sync-cf`` 0.4, ``cf-worker/do/push.ts``). Nothing here knows a
frame's shape, and nothing here knows SQL: storage is reached through
``syncapp.core.eventlog``.

A subscriber is one client's place in a store's log: a 0.3 socket, or one
live pull of a 0.4 socket. Both are the same ``Subscriber``: a sequencer that
forwards, drops or repairs each committed batch, and a catch-up from storage
when the log went on without it.

The package's other modules are the core's own parts: ``eventlog`` (commit a push durably, then announce
it to the fan-out), ``sequencer`` (a subscriber's ordering decisions) and ``hooks`` (the ``ON_PUSH`` /
``ON_PULL`` hook policy every transport shares).
"""

import functools
import logging
import time
from typing import NamedTuple

import msgspec
from django.db import DatabaseError

from .. import metrics, storage
from ..fanout.hub import get_hub
from ..fanout.messages import HEAD
from ..protocol import pages
from . import eventlog
from .hooks import HookRejected, run_hook
from .sequencer import DROP, FORWARD, Sequencer

logger = logging.getLogger("syncapp")

# requestId of the 0.3 push-context PullRes that repairs a socket outside any request.
CATCH_UP_REQUEST_ID = "livesync-catch-up"


class PushRequest(NamedTuple):
    """A decoded push: its id, its events, the request as the ON_PUSH hook sees it, the pusher's backendId."""

    request_id: str
    batch: list
    message: object
    backend_id: str | None = None


# What a push (or a pull) comes to; each generation translates these into its envelope.


class Acknowledged(NamedTuple):
    """The push is committed. ``announcement`` holds what it added: None for an empty batch or a retry of
    events stored before."""

    announcement: "eventlog.Announcement | None"


class StaleParent(NamedTuple):
    """The push's first parent, ``received``, is not the store's ``head``: the client must rebase."""

    received: int
    head: int


class ForeignBackend(NamedTuple):
    """The client's log belongs to another incarnation of the store (it was reset since)."""

    expected: str
    received: str


class Rejected(NamedTuple):
    """Refused for ``reason`` (a hook, a read-only connection, a limit, a broken chain); nothing was written.

    ``cause`` names the kind of refusal for the metrics: ``refused`` (read-only
    or past a limit), ``hook``, ``broken_chain`` or ``content``.
    """

    reason: str
    cause: str = "refused"


class Unavailable(NamedTuple):
    """The database failed; ``reason`` says whether the push may have been stored."""

    reason: str


# The ``outcome`` label of each answer but Rejected (whose label is its cause).
_OUTCOME_LABELS = {
    Acknowledged: "acknowledged",
    StaleParent: "stale_parent",
    ForeignBackend: "foreign_backend",
    Unavailable: "unavailable",
}


async def push(context, request, reply, origin_socket=None, announce_first=False):
    """Commit ``request`` for the connection ``context``, then ``await reply(outcome)`` and announce it.

    The answer follows the commit, so an acknowledged push is durable. The
    announcement to every subscriber of the store (in every process, both
    generations) follows the answer, as in the 0.3 reference, or precedes it
    with ``announce_first``, as in the 0.4 reference (its pusher gets its own
    events on its live pulls before the ``Exit``); either way both happen,
    whatever became of the other. ``events_committed`` receivers come last.
    ``origin_socket`` is the pushing socket's id, so that its own echo can be
    written without a queue.
    """
    started = time.perf_counter()
    outcome = await _outcome(context, request)
    announcement = outcome.announcement if type(outcome) is Acknowledged else None
    steps = [functools.partial(reply, outcome)]
    if announcement is not None:
        announce = functools.partial(eventlog.announce, context.store_id, announcement, origin_socket)
        steps.insert(0 if announce_first else 1, announce)
    try:
        await _each(steps)
    finally:
        metrics.count_push(context.generation, _metric_outcome(outcome), started)
        if announcement is not None:
            await eventlog.tell_receivers(context.store_id, announcement, context.generation)
    return outcome


async def _each(steps):
    """Await every step in turn, even after one failed; then raise the first failure."""
    failure = None
    for step in steps:
        try:
            await step()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, once every step has run
            failure = failure or exc
    if failure is not None:
        raise failure


async def _outcome(context, request):
    """As in the reference: an empty batch succeeds without checks, and ON_PUSH runs before the chain check.

    A push of a read-only connection, or past the connection's limits, is
    rejected before the hook runs.
    """
    batch = request.batch
    if not batch:
        return Acknowledged(None)
    refusal = context.push_refusal(len(batch))
    if refusal is not None:
        return Rejected(refusal)
    try:
        await run_hook("ON_PUSH", request.message, context)
        appended = await eventlog.commit(context.store_id, batch, request.backend_id, generation=context.generation)
    except storage.ParentMismatch as mismatch:
        return StaleParent(mismatch.received, mismatch.head)
    except storage.BackendIdMismatch as mismatch:
        return ForeignBackend(mismatch.expected, mismatch.received)
    except HookRejected as exc:
        return Rejected(str(exc), "hook")
    except storage.BrokenChain as exc:
        return Rejected(str(exc), "broken_chain")
    except storage.PushRejected as exc:
        return Rejected(str(exc), "content")
    except eventlog.StoreUnavailable as exc:
        logger.exception("push failed for store %r", context.store_id)
        return Unavailable(str(exc))
    written = batch[appended.already_stored :]
    metrics.EVENTS_COMMITTED.labels(context.generation).inc(len(written))
    return Acknowledged(eventlog.Announcement(written, appended, request.request_id) if written else None)


def _metric_outcome(outcome):
    """The ``outcome`` label of a push's answer."""
    if type(outcome) is Rejected:
        return outcome.cause
    return _OUTCOME_LABELS[type(outcome)]


class Run(NamedTuple):
    """One frame's worth of a read: its events encoded as a JSON array, how many, the last seqNum read so far,
    events left to the head."""

    batch: msgspec.Raw
    count: int  # type: ignore[assignment]  # shadows tuple.count, which nothing here calls
    last: int
    remaining: int
    backend_id: str | None


class PullFailed(Exception):
    """A pull that cannot be served; ``outcome`` is Rejected, ForeignBackend or Unavailable."""

    def __init__(self, outcome):
        super().__init__(outcome)
        self.outcome = outcome


async def runs(store_id, after, make_item, max_events, create=False, expected_backend_id=None):
    """The store's events after ``after``, as batch items made by ``make_item``, in runs of one frame each.

    Runs hold at most ``max_events`` and about ``pages.MAX_PAGE_BYTES``; the
    first storage page is yielded even when empty (one empty run: it carries
    the head and the backendId). Reading goes on until the head is reached, so
    events committed while a long backlog streams are part of it, and memory
    stays bounded by one database read. Raises storage.BackendIdMismatch when
    the store is not the incarnation ``expected_backend_id`` names, and
    eventlog.StoreUnavailable when the database fails.
    """
    try:
        async for page in eventlog.reads(store_id, after, create=create):
            if expected_backend_id is not None and page.backend_id != expected_backend_id:
                raise storage.BackendIdMismatch(page.backend_id, expected_backend_id)
            expected_backend_id = None
            items = [make_item(eventlog.wire_event(stored), stored.created_at) for stored in page.events]
            sent = 0
            for count, batch in pages.encoded_runs(items, max_events):
                sent += count
                if count:
                    after = page.events[sent - 1].seq_num
                yield Run(batch, count, after, max(0, page.head - after), page.backend_id)
    except DatabaseError as error:
        raise eventlog.StoreUnavailable("Pull failed: the database is unavailable") from error


async def pull(context, message, after, make_item, max_events, create=False, expected_backend_id=None):
    """``runs`` for a client's pull: the ON_PULL hook first; PullFailed with the outcome to answer."""
    try:
        await run_hook("ON_PULL", message, context)
    except HookRejected as exc:
        raise PullFailed(Rejected(str(exc))) from None
    try:
        async for run in runs(context.store_id, after, make_item, max_events, create, expected_backend_id):
            metrics.PULL_EVENTS.labels(context.generation).inc(run.count)
            metrics.PULL_BYTES.labels(context.generation).inc(len(run.batch))
            yield run
    except storage.BackendIdMismatch as mismatch:
        raise PullFailed(ForeignBackend(mismatch.expected, mismatch.received)) from None
    except eventlog.StoreUnavailable as exc:
        logger.exception("pull failed for store %r", context.store_id)
        raise PullFailed(Unavailable(str(exc))) from None


class Subscriber:
    """One client's place in its store's log, kept contiguous and duplicate-free on one socket.

    ``forward(message)`` is the generation's pre-encoded frames of a committed
    batch; ``catch_up(after, request_id)`` is an async iterator of
    ``(frame, last seqNum)`` read from storage after ``after``. Every batch is
    offered to the sequencer: the next one in line is forwarded, one the
    client has is dropped, and anything else (a lost broadcast, a head that
    moved without one) makes the subscriber catch up from storage.
    """

    def __init__(self, store_id, socket, forward, catch_up):
        self.store_id = store_id
        self.socket = socket
        self.sequencer = Sequencer()
        self._forward = forward
        self._catch_up = catch_up
        # Store messages waiting while the subscriber's first pull streams (None once it is live).
        self.held = None

    def frames_for(self, message):
        """The frames a store message means, when that needs no I/O; None when storage must be read first.

        Moves the subscriber's position: the caller sends the frames.
        """
        if message["type"] == HEAD:
            cursor = self.sequencer.cursor
            return None if cursor is not None and cursor < message["head"] else ()
        decision = self.sequencer.on_broadcast(message["first"], message["last"])
        if decision == FORWARD:
            return self._forward(message)
        if decision == DROP:
            return ()
        return None

    async def receive(self, message):
        """Send what a store message (``livesync.events`` or ``livesync.head``) means to this subscriber."""
        frames = self.frames_for(message)
        if frames is None:
            metrics.REPAIRS.labels("head_check" if message["type"] == HEAD else "gap").inc()
            await self.repair(message.get("request_id", CATCH_UP_REQUEST_ID))
            return
        for frame in frames:
            await self.socket.send(text_data=frame)

    async def stream(self, frames):
        """Send ``(frame, last seqNum)`` pairs as the client takes them, moving the position with each."""
        async for frame, last in frames:
            await self.socket.send(text_data=frame)
            self.sequencer.sent(last)
            await self.socket.writable()

    async def repair(self, request_id=CATCH_UP_REQUEST_ID):
        """Send what the subscriber lacks from storage; if the database is down, a later head check retries."""
        try:
            await self.stream(self._catch_up(self.sequencer.cursor, request_id))
        except eventlog.StoreUnavailable:
            logger.warning("could not catch a subscriber of store %r up: the database is unavailable", self.store_id)
            get_hub().repair_later(self.store_id)
