"""The server glue between ASGI and the sync core, shared by both protocol generations and transports.

- ``websocket``: the base of every sync WebSocket consumer (inbox, turn, write buffer, graceful shutdown);
  ``views``: the reference worker's plain-HTTP answers.
- ``handshake``: a connection request's Host, Origin, ``storeId`` and payload, and the validator;
  ``hooks``: the ``ON_PUSH`` / ``ON_PULL`` hooks; ``cors``: the reference's CORS headers.
- ``limits``: per-client rates and connection counts; ``revocation``: access taken away reaches open sockets;
  ``mounts``: the sync endpoints a project built.
- ``daphne_compat``: what livesync needs of daphne beyond ASGI.
"""
