"""ASGI entry point: ``daphne livesync_project.asgi:application`` serves HTTP (admin) and the sync WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livesync_project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from syncapp.logcontext import redact_server_logs  # noqa: E402
from syncapp.routing import TransportRouter, websocket_urlpatterns  # noqa: E402

# A client's syncPayload (its auth token) travels in the URL (`payload=`): daphne's access log, on by default,
# and uvicorn's write request lines with their query strings. From here on they write `payload=[redacted]`.
redact_server_logs()

application = ProtocolTypeRouter(
    {
        # 0.4 clients on any path with ?transport=http; the rest is Django, whose static files (the admin's
        # CSS and JS) daphne serves itself, so a separate static server is not one more thing to run.
        "http": TransportRouter(ASGIStaticFilesHandler(django_asgi_app)),
        # 0.4 clients on any path with ?transport=ws, 0.3 clients on …/websocket; validators and hooks see the
        # user of the session cookie (Channels' auth middleware).
        "websocket": TransportRouter(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
