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
    # The connection's push allowance (MAX_PUSHES_PER_SECOND): pushes it may still make now, and when counted.
    _allowance: float | None = field(default=None, repr=False, compare=False)
    _counted_at: float = field(default=0.0, repr=False, compare=False)

    @classmethod
    def of(cls, store_id: str, payload: object, generation: str, scope: dict[str, Any] | None) -> Self:
        scope = scope or {}
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        user = scope.get("user") or AnonymousUser()
        return cls(store_id, payload, generation, scope or None, user, headers)

    def push_refusal(self, event_count: int) -> str | None:
        """Why this connection may not push ``event_count`` events now (its limits), or None."""
        if self.read_only:
            return READ_ONLY_MESSAGE
        most = conf.get("MAX_EVENTS_PER_PUSH")
        if most is not None and event_count > most:
            return f"Push refused: more than {most} events in one push"
        rate = conf.get("MAX_PUSHES_PER_SECOND")
        if rate is None:
            return None
        now = time.monotonic()
        burst = 2 * rate
        allowance = burst if self._allowance is None else self._allowance
        allowance = min(burst, allowance + (now - self._counted_at) * rate)
        self._counted_at = now
        if allowance < 1:
            self._allowance = allowance
            return f"Push refused: more than {rate} pushes per second on this connection"
        self._allowance = allowance - 1
        return None
