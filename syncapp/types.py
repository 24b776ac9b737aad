"""Public: named types for what a project hands livesync, for type checkers.

``Validator`` is the shape of ``LIVESYNC["VALIDATE_PAYLOAD"]`` and of a mount's
``validate_payload=``, ``Hook`` that of ``ON_PUSH``, ``ON_PUSH_RES``,
``ON_PULL`` and ``ON_PULL_RES`` (see the docs' Authenticate clients and
Settings pages). ``ASGIApp`` is what ``syncapp.routing.TransportRouter`` routes
to. Nothing here is used at run time: livesync calls what it is given.
"""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from .context import SyncContext

# What a validator returns: None accepts the connection, ``syncapp.context.READ_ONLY`` accepts it for reading
# only (any other value is taken as None). It refuses by raising; the exception's text is the refusal's.
Verdict: TypeAlias = str | None

# ``validate(payload, context)``: ``payload`` is the client's ``syncPayload`` as parsed JSON (None without one),
# so any JSON value. A plain function runs in a thread; an ``async def`` one on the event loop.
Validator: TypeAlias = Callable[[object, SyncContext], Verdict | Awaitable[Verdict]]

# A request or response as hooks get it: the 0.3 frame or the 0.4 RPC payload as plain dicts and lists.
HookMessage: TypeAlias = dict[str, Any]

# ``hook(message)`` or ``hook(message, context)``, sync or ``async def``. What it returns is ignored: a request
# hook (ON_PUSH, ON_PULL) rejects by raising, a response hook (ON_*_RES) that raises is logged.
Hook: TypeAlias = Callable[[HookMessage], object] | Callable[[HookMessage, SyncContext], object]

# An ASGI application, ``await app(scope, receive, send)``. Loose on purpose: Django's handler, Channels'
# routers and Channels' middleware (``AuthMiddlewareStack`` is typed as returning an ASGI 2 or 3 application)
# each type scope, receive and send differently, and all of them must be accepted.
ASGIApp: TypeAlias = Callable[..., Any]

if TYPE_CHECKING:
    from . import access, tokens

    # The ready validators keep to the contract above.
    _ready_validators: list[Validator] = [access.user_access, tokens.validate_token]
