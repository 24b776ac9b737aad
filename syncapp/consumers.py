"""The sync endpoints under the names a project's ``asgi.py`` imports them by.

``V03Consumer`` (``makeCfSync``), ``V04WsConsumer`` (``makeWsSync``) and
``V04HttpEndpoint`` (``makeHttpSync``) live with their protocol generation
(``syncapp.v03``, ``syncapp.v04``). ``SyncConsumer``, ``RpcSyncConsumer`` and
``RpcHttpEndpoint`` are their former names, kept so that existing ``asgi.py``
files go on working.
"""

from .v03.consumer import V03Consumer
from .v04.http import V04HttpEndpoint
from .v04.ws import V04WsConsumer

SyncConsumer = V03Consumer
RpcSyncConsumer = V04WsConsumer
RpcHttpEndpoint = V04HttpEndpoint

__all__ = ["RpcHttpEndpoint", "RpcSyncConsumer", "SyncConsumer", "V03Consumer", "V04HttpEndpoint", "V04WsConsumer"]
