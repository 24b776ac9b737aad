"""The example project's settings with the knobs a fault test needs to provoke a condition in a real process.

Used only by tests that say so (``DJANGO_SETTINGS_MODULE=tests.faults.settings``); every other fault test runs
the project's own settings. Environment:

- ``LIVESYNC_FAULTS_SOCKET_QUEUE_SIZE``: ``LIVESYNC["SOCKET_QUEUE_SIZE"]``.
- ``LIVESYNC_FAULTS_SLOW_PULL_SECONDS``: an ``ON_PULL`` hook makes pulls whose requestId starts with ``slow``
  take that long (an authorization hook calling a slow service), so the socket's consumer is busy while
  store messages pile up in its inbox.
"""

import os

from livesync_project.settings import *  # noqa: F403
from livesync_project.settings import LIVESYNC

LIVESYNC = {**LIVESYNC, "ON_PULL": "tests.support.hooks.slow_pull"}
if os.environ.get("LIVESYNC_FAULTS_SOCKET_QUEUE_SIZE"):
    LIVESYNC["SOCKET_QUEUE_SIZE"] = int(os.environ["LIVESYNC_FAULTS_SOCKET_QUEUE_SIZE"])
