"""Public: store-scoped, expiring tokens for clients not on the project's site (mobile, desktop, another origin).

A token is signed with the project's ``SECRET_KEY`` (``django.core.signing``: no new dependency, and rotating
the key with ``SECRET_KEY_FALLBACKS`` works as for sessions). It names the stores it opens — exact storeIds or
prefixes ending in ``*`` — whether it may write, and when it expires. The project's own views issue them
(``issue``), operators with ``manage.py livesync_token``; ``validate_token`` is the ready validator that
accepts them from the client's ``syncPayload: { authToken }``.
"""

import time
from collections.abc import Iterable

from django.core import signing

from .context import READ_ONLY, SyncContext

SALT = "syncapp.tokens"
DEFAULT_LIFETIME_SECONDS = 3600


class InvalidToken(Exception):
    """The token does not open this store now; the message says why (it is logged with the refusal)."""


def issue(stores: str | Iterable[str], *, read_only: bool = False, expires_in: float = DEFAULT_LIFETIME_SECONDS) -> str:
    """A token opening ``stores`` (storeIds, or prefixes ending in ``*``) for ``expires_in`` seconds."""
    stores = [stores] if isinstance(stores, str) else list(stores)
    if not stores:
        raise ValueError("a token must name at least one store")
    claims = {"stores": stores, "read_only": bool(read_only), "expires": int(time.time() + expires_in)}
    return signing.dumps(claims, salt=SALT, compress=True)


def store_matches(pattern: str, store_id: str) -> bool:
    return store_id.startswith(pattern[:-1]) if pattern.endswith("*") else store_id == pattern


def verify(token: object, store_id: str) -> str | None:
    """``READ_ONLY`` or None (read-write) for a token that opens ``store_id`` now; raises InvalidToken."""
    if not isinstance(token, str) or not token:
        raise InvalidToken("no authToken in the sync payload")
    try:
        claims = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise InvalidToken("the token's signature is invalid") from None
    if time.time() >= claims["expires"]:
        raise InvalidToken("the token has expired")
    if not any(store_matches(pattern, store_id) for pattern in claims["stores"]):
        raise InvalidToken(f"the token does not open store {store_id!r}")
    return READ_ONLY if claims["read_only"] else None


def validate_token(payload: object, context: SyncContext) -> str | None:
    """``LIVESYNC["VALIDATE_PAYLOAD"] = "syncapp.tokens.validate_token"``: accept signed tokens only."""
    token = payload.get("authToken") if isinstance(payload, dict) else None
    return verify(token, context.store_id)
