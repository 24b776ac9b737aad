"""Public: routing of the sync endpoints, for a project's ``asgi.py``.

0.3 clients (``makeCfSync``) open a WebSocket on ``<url>/websocket``; the
reference worker takes any path ending in ``/websocket``, and so do
``websocket_urlpatterns``. 0.4 clients (``makeWsSync`` / ``makeHttpSync``)
request ``<url>`` itself, and the reference routes them on the query alone
(``transport=ws|http``): ``TransportRouter`` sits in front of the project's
own routing and takes those requests first, on any path (a server that is only
a sync server, like the example project) or only under ``path_prefix`` (a
project that serves its own pages too, whose URLs must stay its own).

Routed around Django's middleware, every endpoint applies Django's rules itself
before the upgrade (``syncapp.server.handshake``): the Host as ``ALLOWED_HOSTS`` takes
it, a browser's Origin as ``CsrfViewMiddleware`` takes it (the site's own,
``CSRF_TRUSTED_ORIGINS``, ``LIVESYNC["ALLOWED_ORIGINS"]``), and over 0.4 HTTP
the Referer of a request with the session cookie and no Origin over HTTPS.
"""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.auth import AuthMiddlewareStack
from django.urls import URLPattern, re_path

from .consumers import V03Consumer, V04HttpEndpoint, V04WsConsumer
from .types import ASGIApp
from .v04.http import transport_of

if TYPE_CHECKING:
    # What ``__getattr__`` builds, as type checkers see it. A module ``__getattr__`` they saw would give every
    # misspelt name its type, so they do not see it. Django ``URLPattern``s, typed as Channels' stubs need them
    # for ``URLRouter(websocket_urlpatterns)``: those take a list of a private pattern type of their own.
    websocket_urlpatterns: list[Any]
else:

    def __getattr__(name: str) -> list[URLPattern]:
        """``websocket_urlpatterns``, the reference's 0.3 route (any path ending in ``/websocket``), built when a
        project imports it: a project that mounts its own routes has no unused endpoint counted by the checks."""
        if name == "websocket_urlpatterns":
            return [re_path(r"^(?:.*/)?websocket$", V03Consumer.as_asgi())]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TransportRouter:
    """ASGI router: 0.4 sync requests to their endpoints, everything else to ``fallback``.

    ``TransportRouter(URLRouter(websocket_urlpatterns))`` for the websocket
    protocol and ``TransportRouter(django_asgi_app)`` for http; ``websocket``
    and ``http`` replace the 0.4 endpoints (e.g. with another validator:
    ``V04WsConsumer.as_asgi(validate_payload=…)``, ``V04HttpEndpoint(validate_payload=…)``).
    ``path_prefix`` (e.g. ``"/sync"``) limits it to that path and the paths under it. The default
    endpoints run under Channels' ``AuthMiddlewareStack``; endpoints passed in are used as given.
    """

    def __init__(
        self,
        fallback: ASGIApp,
        websocket: ASGIApp | None = None,
        http: ASGIApp | None = None,
        path_prefix: str | None = None,
    ) -> None:
        self.fallback: ASGIApp = fallback
        # Under Channels' auth middleware, so that validators and hooks see the session's user.
        self.websocket: ASGIApp = websocket or AuthMiddlewareStack(V04WsConsumer.as_asgi())
        self.http: ASGIApp = http or AuthMiddlewareStack(V04HttpEndpoint())
        self.path_prefix = None if path_prefix is None else "/" + path_prefix.strip("/")

    def _takes(self, path: str) -> bool:
        prefix = self.path_prefix
        return prefix is None or path == prefix or path.startswith(prefix.rstrip("/") + "/")

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        transport = transport_of(scope)
        if transport in ("ws", "http") and self._takes(scope.get("path", "")):
            if scope["type"] == "http":
                return await self.http(scope, receive, send)
            if scope["type"] == "websocket" and transport == "ws":
                return await self.websocket(scope, receive, send)
        return await self.fallback(scope, receive, send)
