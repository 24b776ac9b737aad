"""The sync endpoints a project built, and whether each has a validator of its own (for ``syncapp.E013``).

``LIVESYNC["VALIDATE_PAYLOAD"]`` guards every endpoint that was not given one explicitly, so a project
without it is open unless each of its endpoints has its own: the check can only tell once it knows them.
"""

_mounts: list[tuple[str, bool]] = []


def record(kind, validate_payload):
    """An endpoint (``kind``, e.g. "0.3 websocket") was built, with or without a validator of its own."""
    _mounts.append((kind, validate_payload is not None))


def unguarded():
    """The kinds of the endpoints built so far that rely on ``VALIDATE_PAYLOAD``; None before any was built."""
    if not _mounts:
        return None
    return sorted({kind for kind, guarded in _mounts if not guarded})
