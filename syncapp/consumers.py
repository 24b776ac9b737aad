"""Public: the sync endpoints, for a project's ``asgi.py``.

``V03Consumer`` (``makeCfSync``), ``V04WsConsumer`` (``makeWsSync``) and
``V04HttpEndpoint`` (``makeHttpSync``) live with their protocol generation
(``syncapp.v03``, ``syncapp.v04``); this is where users import them from.
"""

from .v03.consumer import V03Consumer
from .v04.http import V04HttpEndpoint
from .v04.ws import V04WsConsumer

__all__ = ["V03Consumer", "V04HttpEndpoint", "V04WsConsumer"]
