"""An ASGI application whose every sync endpoint has a validator of its own (and no VALIDATE_PAYLOAD)."""

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path

from syncapp.consumers import SyncConsumer
from syncapp.routing import TransportRouter
from syncapp.rpc_consumers import RpcSyncConsumer
from syncapp.rpc_http import RpcHttpEndpoint

GUARD = "tests.hooks.reject_all"

endpoints_04 = {
    "websocket": RpcSyncConsumer.as_asgi(validate_payload=GUARD),
    "http": RpcHttpEndpoint(validate_payload=GUARD),
}
application = ProtocolTypeRouter(
    {
        "http": TransportRouter(None, **endpoints_04),
        "websocket": TransportRouter(
            URLRouter([re_path(r"^sync/websocket$", SyncConsumer.as_asgi(validate_payload=GUARD))]), **endpoints_04
        ),
    }
)
