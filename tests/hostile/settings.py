"""The example project's settings with the knobs a hostile-input test needs, read from the environment.

Used only by tests that say so (``DJANGO_SETTINGS_MODULE=tests.hostile.settings``):

- ``LIVESYNC_HOSTILE_REQUEST_HEADER_TIMEOUT``: ``LIVESYNC["REQUEST_HEADER_TIMEOUT"]`` (seconds).
"""

import os

from livesync_project.settings import *  # noqa: F403
from livesync_project.settings import LIVESYNC

LIVESYNC = dict(LIVESYNC)
if os.environ.get("LIVESYNC_HOSTILE_REQUEST_HEADER_TIMEOUT"):
    LIVESYNC["REQUEST_HEADER_TIMEOUT"] = float(os.environ["LIVESYNC_HOSTILE_REQUEST_HEADER_TIMEOUT"])
