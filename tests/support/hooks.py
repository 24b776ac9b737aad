"""Hooks the tests configure through LIVESYNC import strings."""

import asyncio
import os

seen = []


def record(message):
    seen.append(message)


async def record_async(message):
    seen.append(message)


def reject_forbidden_push(message):
    if any(event["name"] == "v1.Forbidden" for event in message["batch"]):
        raise PermissionError("not allowed")


def reject_all(payload, context):
    raise ValueError(f"no entry to {context.store_id}")


async def pause(message):
    """Slows every page down, so that pushes commit while a catch-up is still streaming."""
    import asyncio

    await asyncio.sleep(0.05)


contexts = []


def record_context(payload, context):
    """A validator that lets everyone in and keeps what it was shown; a reader's connection is read-only."""
    from syncapp.context import READ_ONLY

    contexts.append(context)
    return READ_ONLY if (payload or {}).get("role") == "reader" else None


def record_with_context(message, context):
    """A two-argument hook: it is given the connection's context too."""
    seen.append((message, context))


def fail(message, *context):
    """A hook that always raises: request hooks reject with it, response hooks are logged."""
    raise RuntimeError("hook failed on purpose")


async def slow_pull(message):
    """(Installed by ``tests.faults.settings`` in a server process.) Make a pull whose requestId starts with
    ``slow`` take LIVESYNC_FAULTS_SLOW_PULL_SECONDS."""
    if str(message.get("requestId", "")).startswith("slow"):
        await asyncio.sleep(float(os.environ.get("LIVESYNC_FAULTS_SLOW_PULL_SECONDS", "0")))
