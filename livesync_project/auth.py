"""The example payload validator of LiveStore's sync-cf seed, switched on by LIVESYNC_AUTH_TOKEN."""

import hmac
import os


async def validate_payload(payload, context):
    """Reject the connection unless ``payload.authToken`` equals LIVESYNC_AUTH_TOKEN.

    Compared with ``hmac.compare_digest``, whose time does not depend on how much of the token was right, so
    answer times tell a client nothing about the secret. A coroutine: it does no I/O, and a plain function hook
    runs on a thread, one trip per connection.
    """
    expected = os.environ.get("LIVESYNC_AUTH_TOKEN") or ""
    sent = payload.get("authToken") if isinstance(payload, dict) else None
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ValueError("Invalid auth token")
