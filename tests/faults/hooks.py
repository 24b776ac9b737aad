"""Hooks ``tests.faults.settings`` installs in a server process."""

import asyncio
import os


async def slow_pull(message):
    """Make a pull whose requestId starts with ``slow`` take LIVESYNC_FAULTS_SLOW_PULL_SECONDS."""
    if str(message.get("requestId", "")).startswith("slow"):
        await asyncio.sleep(float(os.environ.get("LIVESYNC_FAULTS_SLOW_PULL_SECONDS", "0")))
