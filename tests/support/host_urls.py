"""A host project's own routes, served beside livesync: a view that reads an upload, one that streams, one
that shows its ASGI scope, and a WebSocket consumer that echoes and closes with the code it is sent."""

import asyncio

from channels.generic.websocket import WebsocketConsumer
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

# What the streaming view sends, and how long it waits before each part after the first.
STREAMED_PARTS = (b"first part\n", b"second part\n", b"last part\n")
STREAM_PAUSE_SECONDS = 1.0


def home(request):
    return HttpResponse("host home")


@csrf_exempt
def upload(request):
    return HttpResponse(f"received {len(request.body)} bytes")


async def _parts():
    # Asynchronous: under ASGI, Django reads a synchronous iterator to its end before sending any of it.
    for index, part in enumerate(STREAMED_PARTS):
        if index:
            await asyncio.sleep(STREAM_PAUSE_SECONDS)
        yield part


def stream(request):
    return StreamingHttpResponse(_parts(), content_type="text/plain")


def scope(request):
    return JsonResponse({"keys": sorted(request.scope), "extensions": sorted(request.scope.get("extensions") or {})})


class EchoConsumer(WebsocketConsumer):
    """Echoes text frames; ``close <code>`` closes the socket with that code."""

    def connect(self):
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        if text_data and text_data.startswith("close "):
            self.close(code=int(text_data.split()[1]))
        else:
            self.send(text_data=text_data)


urlpatterns = [
    path("", home),
    path("upload/", upload),
    path("stream/", stream),
    path("scope/", scope),
]
