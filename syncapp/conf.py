"""The ``LIVESYNC`` settings dict, its documented defaults and its import-string hooks.

Every setting lives in one dict so a project configures livesync in one place,
the way django-debug-toolbar does. The effective values are computed once
and again whenever Django's ``setting_changed`` signal says ``LIVESYNC``
changed, so ``override_settings(LIVESYNC=...)`` in tests takes effect
immediately, while a hot path (every frame asks for ``MAX_MESSAGE_BYTES``)
pays a dict lookup, not a settings lookup.
"""

import inspect
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # Import string of ``callable(payload, context)``, sync or async, run before each
    # WebSocket upgrade and each 0.4 HTTP request (both protocol generations). It
    # rejects by raising; ``context`` is a dict with ``store_id`` and the ASGI
    # ``scope``. None accepts every payload.
    "VALIDATE_PAYLOAD": None,
    # Whether a server with DEBUG off and no validator (VALIDATE_PAYLOAD, or one per
    # mount) is meant to let any client read and write every store. Only the system
    # checks read it: False makes such a server an error (syncapp.E013), True says
    # it is open on purpose.
    "ALLOW_ANONYMOUS": False,
    # Import strings of ``callable(message)`` mirroring ``makeDurableObject``'s
    # onPush / onPushRes / onPull / onPullRes, for both generations. ``message`` is
    # the request (0.3: the frame; 0.4: the RPC payload) or response as a dict. A
    # raising ON_PUSH or ON_PULL rejects the request (0.3: ``WSMessage.Error``;
    # 0.4: ``UnknownError``); a raising ON_*_RES hook is logged and changes
    # nothing the client sees. A hook taking a second argument also gets the
    # connection's ``SyncContext``.
    "ON_PUSH": None,
    "ON_PUSH_RES": None,
    "ON_PULL": None,
    "ON_PULL_RES": None,
    # Secret of the AdminResetRoomReq / AdminInfoReq frames. None (no secret) turns
    # those frames off: they are answered with an error and change nothing.
    "ADMIN_SECRET": None,
    # Events per PullRes chunk; the reference uses 100.
    "PULL_CHUNK_SIZE": 100,
    # Largest accepted text frame in bytes (the reference's platform caps at 900,000
    # for its pages); a larger frame is answered with WSMessage.Error and ignored.
    "MAX_MESSAGE_BYTES": 1_000_000,
    # Longest accepted storeId in characters.
    "MAX_STORE_ID_LENGTH": 255,
    # Answer CORS preflights and add Access-Control-* headers to HTTP answers.
    "ENABLE_CORS": False,
    # Browser origins allowed besides the site's own and CSRF_TRUSTED_ORIGINS (Django's rule for unsafe
    # requests); ["*"] allows any origin to requests without the session cookie. Requests without an Origin
    # header (Node, native apps) are always allowed.
    "ALLOWED_ORIGINS": None,
    # Threads that run database work off the event loop, each with its own
    # connection (see syncapp.storage.db); on PostgreSQL also the most connections the
    # event loop opens for pushes (syncapp.storage.postgres). None: one on SQLite, four elsewhere.
    "DATABASE_THREADS": None,
    # Seconds between each process's reads of its stores' heads, the safety net
    # for broadcasts the channel layer lost (see syncapp.fanout.hub).
    "HEAD_CHECK_INTERVAL": 1.0,
    # Messages waiting for one socket (store messages and the client's own frames);
    # a socket whose backlog exceeds this is closed with code 1013 (try again
    # later) and its client reconnects.
    "SOCKET_QUEUE_SIZE": 1000,
    # Bytes written to one socket that its client has not read yet (under daphne).
    # Pulls pause above 1 MB until the client reads; a socket whose client lets more
    # than this pile up is closed with 1013. Bounds what a client that never reads
    # costs the server, whatever it asks for.
    "SOCKET_WRITE_BUFFER_BYTES": 8_000_000,
    # Pulls one 0.4 WebSocket may have in flight at once (the client uses one);
    # a further one fails with UnknownError.
    "MAX_PULLS_PER_SOCKET": 4,
    # Seconds a connection may take to send its first request's headers (under
    # daphne), so half-sent handshakes cannot hold connections forever. A body is
    # not timed.
    "REQUEST_HEADER_TIMEOUT": 10.0,
    # Whether a client connecting to an unknown store creates it (the reference's
    # behaviour). False: stores exist only once created by ``livesync_create`` (or
    # an import), and a connection to another storeId is refused before the upgrade.
    "CREATE_STORES": True,
    # Most events one push may carry; a larger push is refused and writes nothing.
    # None: only MAX_MESSAGE_BYTES bounds it.
    "MAX_EVENTS_PER_PUSH": None,
    # Stores whose location (row id, table, backendId) each process keeps in memory,
    # the ones used last; a store used again after that costs one indexed lookup.
    # Bounds a process's memory whatever the number of stores it has served.
    "STORE_CACHE_SIZE": 10_000,
    # Empty eventlog tables each PostgreSQL store database keeps ready (about 16 KB
    # each on disk), so that up to this many new stores arriving at once have their
    # tables renamed from spares instead of created on their first push's path
    # (see syncapp.storage.spares). 0 turns spares off; SQLite keeps none.
    "SPARE_TABLES": 64,
    # Aliases in ``DATABASES`` that hold stores. Each store lives wholly in one of
    # them (its registry row and its eventlog table); a new store goes to the one a
    # stable hash of its storeId picks, and where it went is recorded in the
    # default database, so adding an alias later moves no existing store. Every
    # alias needs ``manage.py migrate --database=<alias>``. None: the default
    # database alone.
    "STORE_DATABASES": None,
    # Who may read ``/metrics`` (Prometheus' text format, per process): requests
    # must carry ``Authorization: Bearer <METRICS_TOKEN>`` if it is set, and come
    # from one of METRICS_ALLOWED_ADDRESSES (addresses or networks, e.g.
    # "10.0.0.0/8") if that is set. Both None: the endpoint is off (404).
    "METRICS_TOKEN": None,
    # Whether the process keeps metrics at all (read once, at start). False makes
    # every count a no-op, which is how the bench measures what they cost.
    "METRICS": True,
    "METRICS_ALLOWED_ADDRESSES": None,
    # Pushes one connection may make per second, on average (bursts up to twice
    # that); a push beyond is refused and writes nothing. None: no limit.
    "MAX_PUSHES_PER_SECOND": None,
    # Pushes per second one client (a user, a token's subject, else an address) may make over all its
    # connections and 0.4 HTTP requests together, in every process. None: no limit.
    "MAX_PUSHES_PER_SECOND_PER_CLIENT": None,
    # Events per second one client may push, counted as above. None: no limit.
    "MAX_EVENTS_PER_SECOND_PER_CLIENT": None,
    # WebSockets one client may have open at once, in every process. None: no limit.
    "MAX_CONNECTIONS_PER_CLIENT": None,
    # WebSockets one address may have open at once, in every process, whoever they act for. None: no limit.
    "MAX_CONNECTIONS_PER_ADDRESS": None,
    # A request header holding the client's address, set by a proxy every request passes (e.g.
    # "X-Forwarded-For", "X-Real-IP"); its last address is used. None: the peer's address.
    "CLIENT_ADDRESS_HEADER": None,
    # Seconds (±20 %) between re-runs of the validator on each open WebSocket; a socket is also re-checked at
    # once when its user's access changes, and at its token's expiry (syncapp.server.revocation). None: only then.
    "REVALIDATE_INTERVAL": 10.0,
    # Whether, under daphne, the objects alive when the server starts serving are
    # collected once and frozen (``gc.freeze``), so that the garbage collector's
    # full collections walk only objects allocated since (see syncapp.server.daphne_compat).
    "FREEZE_STARTUP_OBJECTS": True,
    # The PostgreSQL schema that holds every store's eventlog table and the spare tables,
    # in each store database, so that the host's own schema shows none of them.
    # ``migrate`` creates it; tables made by versions before it stay usable where they
    # are until ``manage.py livesync_move_tables`` moves them in. None: the connection's
    # own schema (its search_path), as before. SQLite has no schemas: give stores a
    # database file of their own with STORE_DATABASES instead.
    "STORE_SCHEMA": "livesync",
}

HOOK_SETTINGS = ("VALIDATE_PAYLOAD", "ON_PUSH", "ON_PUSH_RES", "ON_PULL", "ON_PULL_RES")


def admin_secret() -> str | None:
    """The secret admin frames must carry, or None while they are off."""
    return get("ADMIN_SECRET") or None


def store_cache_size() -> int:
    """How many stores each per-store cache of a process holds (``STORE_CACHE_SIZE``)."""
    return get("STORE_CACHE_SIZE")


def store_databases() -> tuple[str, ...]:
    """The aliases stores live in (``STORE_DATABASES``), in their configured order."""
    return tuple(get("STORE_DATABASES") or (DEFAULT_DB_ALIAS,))


def get(name: str) -> Any:
    """The effective value of one LIVESYNC setting."""
    return _effective()[name]


@cache
def _effective() -> dict[str, Any]:
    return {**DEFAULTS, **(getattr(settings, "LIVESYNC", {}) or {})}


@cache
def _load_hook(path: str) -> Callable[..., Awaitable[Any]]:
    func = import_string(path)
    if inspect.iscoroutinefunction(func):
        return func
    return sync_to_async(func, thread_sensitive=False)


def check_override(name: str, target: object) -> None:
    """Import a mount's own hook now (``as_asgi(validate_payload=…)``), so that a wrong import string
    stops the server at start rather than failing every connection."""
    if not isinstance(target, str):
        return
    try:
        found = import_string(target)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{name}={target!r} cannot be imported: {exc}") from exc
    if not callable(found):
        raise ImproperlyConfigured(f"{name}={target!r} is not callable")


def hook(name: str, override: str | Callable[..., object] | None = None) -> Callable[..., Awaitable[Any]] | None:
    """The async callable configured for hook ``name`` (or ``override``), or None.

    ``override`` may be a callable or an import string; it lets a mount
    (``V03Consumer.as_asgi(validate_payload=...)``) differ from the settings.
    """
    target = override if override is not None else get(name)
    if target is None:
        return None
    if isinstance(target, str):
        return _load_hook(target)
    if inspect.iscoroutinefunction(target):
        return target
    return sync_to_async(target, thread_sensitive=False)


@cache
def _accepts_two_arguments(target: Callable[..., object]) -> bool:
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


@cache
def takes_context(name: str) -> bool:
    """Whether hook ``name`` is a callable of (message, context) rather than of (message) alone (asked once
    per setting, not per call)."""
    target = get(name)
    if isinstance(target, str):
        target = import_string(target)
    return _accepts_two_arguments(target)


def _reset_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "LIVESYNC":
        _effective.cache_clear()
        _load_hook.cache_clear()
        takes_context.cache_clear()


setting_changed.connect(_reset_cache)
