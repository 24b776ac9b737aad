"""The two LiveStore sync protocol generations livesync speaks, named once (a leaf module)."""

# @livestore/sync-cf 0.3: ``makeCfSync``, WSMessage frames over a WebSocket.
V03 = "0.3"
# @livestore/sync-cf 0.4: ``makeWsSync`` / ``makeHttpSync``, Effect RPC over a WebSocket or HTTP.
V04 = "0.4"
