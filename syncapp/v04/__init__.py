"""LiveStore's 0.4 sync protocol (``@livestore/sync-cf`` 0.4, ``makeWsSync`` / ``makeHttpSync``): its codec, its
calls, and its WebSocket and HTTP transports."""
