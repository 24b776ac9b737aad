"""livesync: a LiveStore-compatible sync backend as a reusable Django Channels app.

``PUBLIC_API`` names what a project may import, configure by import string or subclass: those names are
stable and keep their meaning between minor versions (the docs' Python API reference lists them). Everything
else in the package is internal and may move: the sync core (``core``, ``eventlog``, ``sequencer``), the
protocol generations (``v03``, ``v04``), storage (``storage``), fan-out (``fanout``) and the server glue
(``server``). The names are listed here rather than imported, so that importing ``syncapp`` (as
``INSTALLED_APPS`` does before Django's app registry is ready) loads nothing but this list.
"""

PUBLIC_API: dict[str, tuple[str, ...]] = {
    # Settings: the ``LIVESYNC`` dict's keys and defaults.
    "syncapp.conf": ("DEFAULTS",),
    # Mounting the sync endpoints in a project's asgi.py and urls.py.
    "syncapp.routing": ("TransportRouter", "websocket_urlpatterns"),
    "syncapp.urls": ("urlpatterns", "reference_urlpatterns"),
    "syncapp.consumers": ("V03Consumer", "V04WsConsumer", "V04HttpEndpoint"),
    # Who may sync which store: validators, tokens, and what they are told of a connection.
    "syncapp.access": ("user_access",),
    "syncapp.tokens": ("issue", "verify", "claims", "validate_token", "store_matches", "InvalidToken"),
    "syncapp.context": ("SyncContext", "READ_ONLY", "READ_ONLY_MESSAGE"),
    "syncapp.types": ("Verdict", "Validator", "HookMessage", "Hook", "ASGIApp"),
    # Django code in a store: committing events, reading a log, reacting to committed events.
    "syncapp.events": (
        "commit",
        "acommit",
        "atomic",
        "read",
        "js_date",
        "CommitRefused",
        "CommitConflict",
        "CommitOutsideStoreTransaction",
        "SERVER_CLIENT_ID",
        "SERVER_SESSION_ID",
    ),
    "syncapp.signals": ("events_committed",),
    # Logging: context on every record, and secrets kept out of the servers' access logs.
    "syncapp.logcontext": ("ContextFilter", "JsonFormatter", "redact_server_logs"),
}
