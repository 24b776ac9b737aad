"""An ASGI application whose every sync endpoint has a validator of its own (and no VALIDATE_PAYLOAD)."""

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path

from syncapp.consumers import V03Consumer, V04HttpEndpoint, V04WsConsumer
from syncapp.routing import TransportRouter

GUARD = "tests.support.hooks.reject_all"

endpoints_04 = {
    "websocket": V04WsConsumer.as_asgi(validate_payload=GUARD),
    "http": V04HttpEndpoint(validate_payload=GUARD),
}
application = ProtocolTypeRouter(
    {
        "http": TransportRouter(None, **endpoints_04),
        "websocket": TransportRouter(
            URLRouter([re_path(r"^sync/websocket$", V03Consumer.as_asgi(validate_payload=GUARD))]), **endpoints_04
        ),
    }
)
