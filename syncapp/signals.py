"""Public: ``events_committed``, for Django code reacting to the events a store committed, whoever committed them.

Sent once per committed batch, in the process that committed it, after the
commit: for pushes of 0.3 and 0.4 clients (WebSocket or HTTP), for
``syncapp.events.commit`` (after the caller's transaction commits), and for
imports. Receivers get ``sender`` (the ``Store`` model), ``store_id``,
``events`` (``storage.StoredEvent`` tuples: ``args`` is the event's JSON
text) and ``origin`` (one of ORIGINS).

In-process and not durable: a process that dies after a commit and before
its receivers ran never sends it, and other processes never see it. What
must not miss an event reads the log instead (``syncapp.events.read``,
``manage.py livesync_tail``). A receiver that raises is logged once, on the
``syncapp`` logger with the store it failed for; the client, the caller and
the other receivers go on as if it had not.
"""

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

from django.dispatch import Signal

from .models import Store
from .protocol.generations import V03, V04
from .storage import StoredEvent

if TYPE_CHECKING:
    from .protocol.wire import Event

logger = logging.getLogger("syncapp")

PYTHON: Final = "python"
IMPORT: Final = "import"
# Where a batch came from: a client of either protocol generation, the Python API, an import.
ORIGINS = (V03, V04, PYTHON, IMPORT)


class _LoggedOnce(Signal):
    """A Signal whose receivers' failures only ``_log_failures`` logs, with the store they were for."""

    def _log_robust_failure(self, receiver: object, err: Exception) -> None:
        """Nothing: ``send_robust`` would log each failure on ``django.dispatch`` as well (through this hook of
        Django's), and an operator would read it twice, with two tracebacks."""


events_committed = _LoggedOnce()


def stored_events(
    batch: Iterable["Event"], created_at: str, args_text: Callable[["Event"], str | None]
) -> list[StoredEvent]:
    """A committed batch of wire events as the ``StoredEvent`` tuples receivers get."""
    return [
        StoredEvent(e.seqNum, e.parentSeqNum, e.name, args_text(e), created_at, e.clientId, e.sessionId) for e in batch
    ]


def has_receivers() -> bool:
    """Whether anyone listens: a batch is converted for receivers only then."""
    return events_committed.has_listeners()


def send(store_id: str, events: Sequence[StoredEvent], origin: str) -> None:
    """Send ``events_committed`` (from synchronous code); failures of receivers are logged."""
    _log_failures(store_id, events_committed.send_robust(sender=Store, store_id=store_id, events=events, origin=origin))


async def asend(store_id: str, events: Sequence[StoredEvent], origin: str) -> None:
    """``send`` from the event loop (synchronous receivers run in a thread)."""
    responses = await events_committed.asend_robust(sender=Store, store_id=store_id, events=events, origin=origin)
    _log_failures(store_id, responses)


def _log_failures(store_id: str, responses: Iterable[tuple[object, object]]) -> None:
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "events_committed receiver %r failed for store %r",
                receiver,
                store_id,
                exc_info=(type(response), response, response.__traceback__),
            )
