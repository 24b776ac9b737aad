"""Running the ``LIVESYNC`` ON_PUSH / ON_PULL (and ``*_RES``) hooks for every transport."""

from . import conf


class HookRejected(Exception):
    """A hook raised: the request is answered with its message (each protocol in its own envelope)."""


async def run_hook(name, message, to_builtins, context=None):
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
