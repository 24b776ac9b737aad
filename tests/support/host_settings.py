"""A host project's settings: its own views and Channels consumer (``tests.support.host_urls``), and livesync
under ``/sync`` (``tests.support.host_asgi``), for tests of what installing ``syncapp`` changes for the host.

Read from the environment:

- ``HOST_WITHOUT_SYNCAPP``: set, the same project without ``syncapp`` (and without its mount), to compare with.
- ``HOST_REQUEST_HEADER_TIMEOUT``: ``LIVESYNC["REQUEST_HEADER_TIMEOUT"]`` (seconds).
"""

import os

DEBUG = False
SECRET_KEY = "host-project-tests-only-secret-key-0123456789-abcdefghijklmnop"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "syncapp",
]
if os.environ.get("HOST_WITHOUT_SYNCAPP"):
    INSTALLED_APPS.remove("syncapp")
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "tests.support.host_urls"
ASGI_APPLICATION = "tests.support.host_asgi.application"
# The host's views use no database; livesync's sync routes are not used here.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
USE_TZ = True
LIVESYNC = {"ALLOW_ANONYMOUS": True}
if os.environ.get("HOST_REQUEST_HEADER_TIMEOUT"):
    LIVESYNC["REQUEST_HEADER_TIMEOUT"] = float(os.environ["HOST_REQUEST_HEADER_TIMEOUT"])
