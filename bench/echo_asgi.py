"""A bare Channels echo consumer under the project's settings: the ceiling of a round trip through daphne.

``bench.ceilings`` serves it with daphne and times sequential round trips of a push-sized frame. Anything
livesync does per push comes on top of this; ``GET /`` answers 200 so the server reads as ready.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livesync_project.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)


async def ready(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"echo"})


application = ProtocolTypeRouter({"http": ready, "websocket": EchoConsumer.as_asgi()})
