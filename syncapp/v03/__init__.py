"""LiveStore's 0.3 sync protocol (``@livestore/sync-cf`` 0.3, ``makeCfSync``): its codec and its WebSocket
consumer."""
