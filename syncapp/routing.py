"""Routing of the sync endpoints.

0.3 clients (``makeCfSync``) open a WebSocket on any path ending in
``/websocket``, as the reference worker matches them. 0.4 clients
(``makeWsSync`` / ``makeHttpSync``) may use any path: the reference routes
them on the query alone (``transport=ws|http``), so ``TransportRouter`` sits in
front of the project's own routing and takes those requests first.
"""

from django.urls import re_path

from .consumers import SyncConsumer
from .rpc_consumers import RpcSyncConsumer
from .rpc_http import RpcHttpEndpoint, transport_of

websocket_urlpatterns = [
    re_path(r"^(?:.*/)?websocket$", SyncConsumer.as_asgi()),
]


class TransportRouter:
    """ASGI router: 0.4 sync requests to their endpoints, everything else to ``fallback``.

    ``TransportRouter(URLRouter(websocket_urlpatterns))`` for the websocket
    protocol and ``TransportRouter(django_asgi_app)`` for http; ``websocket``
    and ``http`` replace the 0.4 endpoints (e.g. with another validator:
    ``RpcSyncConsumer.as_asgi(validate_payload=…)``, ``RpcHttpEndpoint(validate_payload=…)``).
    """

    def __init__(self, fallback, websocket=None, http=None):
        self.fallback = fallback
        self.websocket = websocket or RpcSyncConsumer.as_asgi()
        self.http = http or RpcHttpEndpoint()

    async def __call__(self, scope, receive, send):
        transport = transport_of(scope)
        if transport in ("ws", "http"):
            if scope["type"] == "http":
                return await self.http(scope, receive, send)
            if scope["type"] == "websocket" and transport == "ws":
                return await self.websocket(scope, receive, send)
        return await self.fallback(scope, receive, send)
