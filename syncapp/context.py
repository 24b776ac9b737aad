"""Public: what the validator and the hooks know of a connection, one object for both generations and transports.

The 0.4 reference hands its callbacks a context with ``storeId``, ``payload`` and ``headers``; a Django
project also wants the connecting user (from the session cookie, through Channels' ``AuthMiddlewareStack``)
and the ASGI scope. ``SyncContext`` carries all of it, as attributes.
"""

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Self

from django.contrib.auth.models import AnonymousUser

from . import conf
from .server import limits

if TYPE_CHECKING:
    # django-stubs' "the project's user model or AnonymousUser": its mypy plugin reads AUTH_USER_MODEL, so a
    # validator's ``context.user.has_perm(…)`` type-checks against the project's own user model.
    from django.contrib.auth.models import _AnyUser

# What a validator returns to accept a connection for reading only: it may pull and live-pull, never push.
READ_ONLY: Final = "read-only"
# The answer to a push on such a connection (both generations).
READ_ONLY_MESSAGE: Final = "Push refused: this connection is read-only"


@dataclass
class SyncContext:
    """One sync connection (a WebSocket) or request (0.4 HTTP), as its validator accepted it."""

    store_id: str
    payload: object
    generation: str
    scope: dict[str, Any] | None = None
    # Channels' AuthMiddlewareStack puts the session's user in the scope; without it, AnonymousUser.
    user: "_AnyUser" = field(default_factory=AnonymousUser)
    # Lower-case header names.
    headers: dict[str, str] = field(default_factory=dict)
    read_only: bool = False
    # Whom the connection acts for when it has no user: a validator sets it (``validate_token`` to the token's
    # ``subject``), and the per-client limits count it as one client (``syncapp.server.limits``).
    subject: str | None = None
    # When (Unix time) the connection's authorization lapses, if it does: a validator sets it (``validate_token`` to
    # the token's expiry), and an open WebSocket re-runs its validator then (``syncapp.server.revocation``).
    expires_at: float | None = None
    # The connection's push allowance (MAX_PUSHES_PER_SECOND): pushes it may still make now, and when counted.
    _allowance: float | None = field(default=None, repr=False, compare=False)
    _counted_at: float = field(default=0.0, repr=False, compare=False)
    # Whom the per-client limits count it as (``limits.client_of``), once asked.
    _client: tuple[str, str] | None = field(default=None, repr=False, compare=False)
    # And the client's push counts (``limits._Client``), once found.
    _rates: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, store_id: str, payload: object, generation: str, scope: dict[str, Any] | None) -> Self:
        scope = scope or {}
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        user = scope.get("user") or AnonymousUser()
        return cls(store_id, payload, generation, scope or None, user, headers)

    def push_refusal(self, event_count: int) -> str | None:
        """Why this connection may not push ``event_count`` events now (its limits, its client's), or None.

        A push it lets through counts against the connection's MAX_PUSHES_PER_SECOND and its client's
        MAX_PUSHES_PER_SECOND_PER_CLIENT and MAX_EVENTS_PER_SECOND_PER_CLIENT (``syncapp.server.limits``); a refused one
        counts against none of them.
        """
        if self.read_only:
            return READ_ONLY_MESSAGE
        most = conf.get("MAX_EVENTS_PER_PUSH")
        if most is not None and event_count > most:
            return f"Push refused: more than {most} events in one push"
        rate = conf.get("MAX_PUSHES_PER_SECOND")
        allowance = 0.0
        if rate is not None:
            now = time.monotonic()
            burst = 2 * rate
            allowance = burst if self._allowance is None else self._allowance
            allowance = min(burst, allowance + (now - self._counted_at) * rate)
            self._counted_at = now
            self._allowance = allowance
            if allowance < 1:
                return f"Push refused: more than {rate} pushes per second on this connection"
        client_limits = limits.current()
        if client_limits.rates:
            refusal = limits.push_refusal(self, event_count, client_limits)
            if refusal is not None:
                return refusal
        if rate is not None:
            self._allowance = allowance - 1
        return None
