"""Two fixes to daphne (4.2.3) that livesync's close codes and graceful shutdown depend on.

1. autobahn's ``sendClose`` refuses every close code but 1000 and 3000-4999, so
   daphne cannot send 1012 (service restart) or 1013 (try again later): the
   consumer's ``close(code=1012)`` raises instead. Send those through autobahn's
   ``sendCloseFrame``, which daphne itself uses for 1011.
2. ``Server.kill_all_applications`` (the SIGTERM path) reads
   ``details["application_instance"]`` for every connection, but an HTTP request
   that was upgraded to a WebSocket stays in ``connections`` without one until
   the next ``application_checker`` tick (1 s): a SIGTERM within a second of any
   handshake raises KeyError, no application is cancelled, and every socket is
   dropped without a close frame. And it waits for the cancelled applications
   with a plain ``asyncio.gather``, which returns as soon as the first of them
   ends (a cancelled task ends by raising CancelledError): the reactor then
   drops every other connection while its application is still closing it.
"""

import asyncio
import logging

REGISTERED_CLOSE_CODES = {1001, 1011, 1012, 1013, 1014}


def install():
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    from twisted.internet import defer

    if getattr(WebSocketProtocol, "_livesync_patched", False):
        return

    original_server_close = WebSocketProtocol.serverClose

    def serverClose(self, code=None):
        if code in REGISTERED_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            original_server_close(self, code)

    def kill_all_applications(self):
        wait_for = []
        for details in self.connections.values():
            application_instance = details.get("application_instance")
            if application_instance is not None and not application_instance.done():
                application_instance.cancel()
                wait_for.append(application_instance)
        logging.getLogger("daphne.server").info("Killed %i pending application instances", len(wait_for))
        wait_deferred = defer.Deferred.fromFuture(asyncio.gather(*wait_for, return_exceptions=True))
        wait_deferred.addErrback(lambda x: None)
        return wait_deferred

    WebSocketProtocol.serverClose = serverClose
    WebSocketProtocol._livesync_patched = True
    Server.kill_all_applications = kill_all_applications
