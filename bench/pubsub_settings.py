"""livesync on ``channels_redis.pubsub.RedisPubSubChannelLayer``: the project's settings with another layer.

The bench selects it with ``DJANGO_SETTINGS_MODULE=bench.pubsub_settings`` in a server's environment
(``python -m bench --layers``), to compare the layer with the project's ``RedisChannelLayer`` without changing
the project. Same Redis (``REDIS_URL``), same socket timeout; the pub/sub layer has no ``capacity``: its
per-channel queues are unbounded and it never drops a message for being full.
"""

from livesync_project.settings import *
from livesync_project.settings import REDIS_SOCKET_TIMEOUT, REDIS_URL

if not REDIS_URL:
    raise RuntimeError("bench.pubsub_settings needs REDIS_URL")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": REDIS_SOCKET_TIMEOUT}]},
    }
}
