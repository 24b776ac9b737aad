"""Public: store-scoped, expiring tokens for clients not on the project's site (mobile, desktop, another origin).

A token is signed with the project's ``SECRET_KEY`` (``django.core.signing``: no new dependency, and rotating
the key with ``SECRET_KEY_FALLBACKS`` works as for sessions). It names the stores it opens — exact storeIds or
prefixes ending in ``*`` — whether it may write, when it expires, and optionally whom it was issued to (its
``subject``: a user id, a device, a customer; the per-client limits count every connection of one subject
together). The project's own views issue them (``issue``), operators with ``manage.py livesync_token``;
``validate_token`` is the ready validator that accepts them from the client's ``syncPayload: { authToken }``,
and an open WebSocket is closed when its token expires (``syncapp.server.revocation``).
"""

import time
from collections.abc import Iterable
from typing import Any

from django.core import signing

from .context import READ_ONLY, SyncContext

SALT = "syncapp.tokens"
DEFAULT_LIFETIME_SECONDS = 3600


class InvalidToken(Exception):
    """The token does not open this store now; the message says why (it is logged with the refusal)."""


def issue(
    stores: str | Iterable[str],
    *,
    read_only: bool = False,
    expires_in: float = DEFAULT_LIFETIME_SECONDS,
    subject: str | None = None,
) -> str:
    """A token opening ``stores`` (storeIds, or prefixes ending in ``*``) for ``expires_in`` seconds, issued to
    ``subject`` (whom the per-client limits count its connections as; None: as their address)."""
    stores = [stores] if isinstance(stores, str) else list(stores)
    if not stores:
        raise ValueError("a token must name at least one store")
    body: dict[str, Any] = {"stores": stores, "read_only": bool(read_only), "expires": int(time.time() + expires_in)}
    if subject is not None:
        body["sub"] = str(subject)
    return signing.dumps(body, salt=SALT, compress=True)


def store_matches(pattern: str, store_id: str) -> bool:
    return store_id.startswith(pattern[:-1]) if pattern.endswith("*") else store_id == pattern


def verify(token: object, store_id: str) -> str | None:
    """``READ_ONLY`` or None (read-write) for a token that opens ``store_id`` now; raises InvalidToken."""
    return READ_ONLY if claims(token, store_id)["read_only"] else None


def claims(token: object, store_id: str) -> dict[str, Any]:
    """The claims of a token that opens ``store_id`` now (``stores``, ``read_only``, ``expires``, ``sub`` if it
    names a subject); raises InvalidToken."""
    if not isinstance(token, str) or not token:
        raise InvalidToken("no authToken in the sync payload")
    try:
        found: dict[str, Any] = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise InvalidToken("the token's signature is invalid") from None
    if time.time() >= found["expires"]:
        raise InvalidToken("the token has expired")
    if not any(store_matches(pattern, store_id) for pattern in found["stores"]):
        raise InvalidToken(f"the token does not open store {store_id!r}")
    return found


def validate_token(payload: object, context: SyncContext) -> str | None:
    """``LIVESYNC["VALIDATE_PAYLOAD"] = "syncapp.tokens.validate_token"``: accept signed tokens only.

    Sets the context's ``subject`` (the token's, if it names one) and ``expires_at`` (its expiry).
    """
    token = payload.get("authToken") if isinstance(payload, dict) else None
    found = claims(token, context.store_id)
    context.subject = found.get("sub")
    context.expires_at = float(found["expires"])
    return READ_ONLY if found["read_only"] else None
