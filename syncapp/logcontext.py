"""What a log record is about: the store, protocol generation, client address and request of the connection
whose task logged it, as attributes a formatter can print (``%(store_id)s``) or a JSON formatter emit.

A connection binds its context when it starts (``bind``), and every record
logged from its task, and from tasks it starts, carries it: asyncio copies
context variables into new tasks. The hub's loops run in an empty context of
their own, since they serve every store. Records logged elsewhere (threads of
the database pool, commands) carry None.

``redact_server_logs`` keeps what clients send in their URLs (``payload=``, the auth token) out of the ASGI
servers' access logs, and lets daphne's access lines go through logging. ``JsonFormatter`` writes every
record as one JSON object with the same fields.
"""

import contextvars
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

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


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the same fields whoever logged it: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message`` and FIELDS (null when the record is about no connection), plus ``exc_info`` (the
    traceback, as text) when there is one.

    Nothing else a library attaches to a record is written: Django's request loggers attach the request,
    whose URL carries a client's sync payload. The message and traceback are redacted (``redact``).
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **{field: getattr(record, field, None) for field in FIELDS},
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc_info"] = redact(record.exc_text)
        return json.dumps(fields, ensure_ascii=False, default=str)


# Secrets in URLs. A LiveStore client sends its ``syncPayload`` (typically ``{"authToken": …}``) as the query
# parameter ``payload`` of every WebSocket upgrade and every 0.4 HTTP request, and servers log request lines
# with their query strings: daphne's access log (``--access-log``, stdout by default), daphne's runserver
# (logger ``django.channels.server``) and uvicorn (loggers ``uvicorn.access`` and ``uvicorn.error``).
SECRET_PARAMETERS = ("payload", "authToken", "auth_token", "access_token", "token")
REDACTED = "[redacted]"

_SECRET_QUERY_VALUE = re.compile(r"(?<![\w.%-])((?:" + "|".join(SECRET_PARAMETERS) + r")=)[^&#\s\"'\]]*", re.IGNORECASE)
# An authToken outside a URL: a payload printed as JSON or as a Python dict.
_AUTH_TOKEN_VALUE = re.compile(r"""(authToken\\?["']?\s*[:=]\s*\\?["']?)[^"'\\&,}\s]+""", re.IGNORECASE)


def redact(text: object) -> object:
    """``text`` with the values of secret query parameters (``payload=``, ``authToken=``, …) and of any
    ``authToken`` in printed JSON replaced by ``[redacted]``."""
    if not isinstance(text, str) or ("=" not in text and "authtoken" not in text.lower()):
        return text
    return _AUTH_TOKEN_VALUE.sub(r"\1" + REDACTED, _SECRET_QUERY_VALUE.sub(r"\1" + REDACTED, text))


class RedactingFilter(logging.Filter):
    """A logger or handler filter that redacts secrets (``redact``) from a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, Mapping):
            record.args = {key: redact(value) for key, value in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(redact(value) for value in args)
        return True


# The loggers ASGI servers write request lines to, URL and all.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "django.channels.server", "django.server")


# The logger daphne's access lines go through once a project gives it a handler of its own (in LOGGING).
ACCESS_LOGGER = "daphne.access"

# daphne's own AccessLogGenerator.write_entry, once redact_server_logs has wrapped it.
_daphne_write_entry: Any = None


def _access_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
    """daphne's access line, redacted: through ACCESS_LOGGER if it has a handler, else to daphne's stream."""
    request = redact(request)
    access_logger = logging.getLogger(ACCESS_LOGGER)
    if not access_logger.handlers:
        return _daphne_write_entry(self, host, date, request, status, length, ident, user)
    # The time is the record's own; the client address is the record's "client" field.
    access_logger.info('"%s" %s %s', request, status or "-", length or "-", extra={"client": host})
    return None


def redact_server_logs() -> None:
    """Keep sync payloads out of the servers' logs; call it once, before the server handles a request (the
    example project's ``asgi.py`` does). Idempotent.

    daphne's access log is no logger but lines written to a stream: its ``AccessLogGenerator`` writes each
    request line through ``redact`` from now on, and through the logger ``daphne.access`` (ACCESS_LOGGER)
    instead of the stream when the project's LOGGING gives that logger a handler, so that access lines take
    the format of every other line. The loggers of SERVER_LOGGERS get a ``RedactingFilter``.
    """
    global _daphne_write_entry
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # not served by daphne
        pass
    else:
        if AccessLogGenerator.write_entry is not _access_entry:
            _daphne_write_entry = AccessLogGenerator.write_entry
            AccessLogGenerator.write_entry = _access_entry
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactingFilter) for existing in logger.filters):
            logger.addFilter(RedactingFilter())
