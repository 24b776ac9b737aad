"""Running the ``LIVESYNC`` ON_PUSH / ON_PULL (and ``*_RES``) hooks for every transport."""

from . import conf


class HookRejected(Exception):
    """A hook raised: the request is answered with its message (each protocol in its own envelope)."""


async def run_hook(name, message, to_builtins):
    """Run the hook ``name`` (if configured) on ``message`` as plain data; HookRejected carries its error."""
    hook = conf.hook(name)
    if hook is None:
        return
    try:
        await hook(to_builtins(message))
    except Exception as exc:
        raise HookRejected(str(exc)) from exc
