"""What a log record is about: the store, protocol generation, client address and request of the connection
whose task logged it, as attributes a formatter can print (``%(store_id)s``) or a JSON formatter emit.

A connection binds its context when it starts (``bind``), and every record
logged from its task, and from tasks it starts, carries it: asyncio copies
context variables into new tasks. The hub's loops run in an empty context of
their own, since they serve every store. Records logged elsewhere (threads of
the database pool, commands) carry None.
"""

import contextvars
import logging

FIELDS = ("store_id", "request_id", "generation", "client")

_current = contextvars.ContextVar("livesync_log_context", default=None)


def bind(**values):
    """Start a connection's context (fields not given are None)."""
    _current.set({field: values.get(field) for field in FIELDS})


def update(**values):
    """Add to the current connection's context (the storeId, once the request is read)."""
    current = _current.get()
    if current is not None:
        _current.set({**current, **values})


def client_address(scope):
    client = (scope or {}).get("client")
    return f"{client[0]}:{client[1]}" if client else None


class ContextFilter(logging.Filter):
    """A handler filter that sets FIELDS on every record, from the context of the task that logged it."""

    def filter(self, record):
        current = _current.get() or {}
        for field in FIELDS:
            if not hasattr(record, field):
                setattr(record, field, current.get(field))
        return True
