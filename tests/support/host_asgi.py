"""The host project's ASGI application: its own HTTP views and WebSocket consumer, and, when ``syncapp`` is
installed, livesync's routes under ``/sync`` in front of them, as the README's embedding section mounts them."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.host_settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.apps import apps  # noqa: E402
from django.urls import path  # noqa: E402

from tests.support.host_urls import EchoConsumer  # noqa: E402

http = django_asgi_app
websocket = URLRouter([path("host/echo", EchoConsumer.as_asgi())])
if apps.is_installed("syncapp"):
    from syncapp.consumers import V03Consumer
    from syncapp.routing import TransportRouter

    http = TransportRouter(http, path_prefix="/sync")
    websocket = TransportRouter(
        URLRouter([path("sync/websocket", V03Consumer.as_asgi()), path("host/echo", EchoConsumer.as_asgi())]),
        path_prefix="/sync",
    )

application = ProtocolTypeRouter({"http": http, "websocket": websocket})
