"""What the validator and the hooks know of a connection: one object for both generations and transports.

The 0.4 reference hands its callbacks a context with ``storeId``, ``payload`` and ``headers``; a Django
project also wants the connecting user (from the session cookie, through Channels' ``AuthMiddlewareStack``)
and the ASGI scope. ``SyncContext`` carries all of it, and still reads like the dict validators used to get
(``context["store_id"]``, ``context["scope"]``).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from django.contrib.auth.models import AnonymousUser

# What a validator returns to accept a connection for reading only: it may pull and live-pull, never push.
READ_ONLY = "read-only"


@dataclass
class SyncContext(Mapping):
    """One sync connection (a WebSocket) or request (0.4 HTTP), as its validator accepted it."""

    store_id: str
    payload: object
    generation: str
    scope: dict | None = None
    user: object = field(default_factory=AnonymousUser)
    headers: dict = field(default_factory=dict)
    read_only: bool = False

    @classmethod
    def of(cls, store_id, payload, generation, scope):
        scope = scope or {}
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        user = scope.get("user") or AnonymousUser()
        return cls(store_id, payload, generation, scope or None, user, headers)

    def __getitem__(self, key):
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())

    @classmethod
    def _names(cls):
        return [f.name for f in fields(cls)]
