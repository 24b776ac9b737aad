"""The example payload validator of LiveStore's sync-cf seed, switched on by LIVESYNC_AUTH_TOKEN."""

import os


async def validate_payload(payload, context):
    """Reject the connection unless ``payload.authToken`` equals LIVESYNC_AUTH_TOKEN.

    A coroutine: it does no I/O, and a plain function hook runs on a thread, one trip per connection.
    """
    expected = os.environ.get("LIVESYNC_AUTH_TOKEN")
    if not isinstance(payload, dict) or payload.get("authToken") != expected:
        raise ValueError("Invalid auth token")
