"""WebSocket routes: any path ending in ``/websocket``, as the reference worker matches them."""

from django.urls import re_path

from .consumers import SyncConsumer

websocket_urlpatterns = [
    re_path(r"^(?:.*/)?websocket$", SyncConsumer.as_asgi()),
]
