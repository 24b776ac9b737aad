"""Running the ``LIVESYNC`` ON_PUSH / ON_PULL (and ``*_RES``) hooks, one policy for every transport.

Request hooks (``ON_PUSH``, ``ON_PULL``) decide: one that raises rejects the request with its message and
nothing is written. Response hooks (``*_RES``) observe: one that raises is logged, and what the client is
sent (and what other sockets are sent) is as if it had not run.
"""

import logging

from .. import conf
from ..context import SyncContext
from ..protocol.wire import to_builtins

logger = logging.getLogger("syncapp")


class HookRejected(Exception):
    """A hook raised: the request is answered with its message (each protocol in its own envelope)."""


async def run_hook(name: str, message: object, context: SyncContext | None = None) -> None:
    """Run the hook ``name`` (if configured) on ``message`` as plain data; HookRejected carries its error.

    A hook that takes two arguments also gets the connection's ``SyncContext``
    (store, user, headers, scope); one that takes one gets the message alone,
    as hooks always did.
    """
    hook = conf.hook(name)
    if hook is None:
        return
    try:
        if conf.takes_context(name):
            await hook(to_builtins(message), context)
        else:
            await hook(to_builtins(message))
    except Exception as exc:
        raise HookRejected(str(exc)) from exc


async def observe(name: str, message: object, context: SyncContext | None = None) -> None:
    """Run the response hook ``name`` on ``message``; a failure is logged and changes nothing."""
    try:
        await run_hook(name, message, context)
    except HookRejected as exc:
        store_id = context.store_id if context is not None else None
        logger.warning("%s hook failed for store %r: %s", name, store_id, exc)
