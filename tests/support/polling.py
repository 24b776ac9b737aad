"""Waiting for a condition in tests that watch real processes and browsers."""

import time


def wait_until(condition, timeout, interval=0.05):
    """Poll a synchronous ``condition`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
