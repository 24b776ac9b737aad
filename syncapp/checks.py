"""System checks for a misconfigured ``LIVESYNC`` setting."""

import sys

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.checks.security.base import SECRET_KEY_MIN_LENGTH, SECRET_KEY_MIN_UNIQUE_CHARACTERS
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import conf
from .fanout import layer_redis
from .server import mounts


@register(Tags.compatibility)
def check_channel_layer(app_configs, **kwargs):
    """Without a default channel layer every sync socket fails at its first message: say so before that."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if "default" in layers:
        return []
    return [
        Error(
            "CHANNEL_LAYERS has no 'default' layer: livesync cannot announce pushes to its sockets.",
            hint="Add CHANNEL_LAYERS = {'default': {'BACKEND': 'channels.layers.InMemoryChannelLayer'}} for one "
            "process, or channels_redis for several (see the docs' Tutorial and Run in production pages).",
            id="syncapp.E008",
        )
    ]


@register(Tags.compatibility)
def check_pubsub_socket_timeout(app_configs, **kwargs):
    """On Python 3.11, a socket timeout on the pub/sub layer's hosts makes sockets that join at once wait in
    line: redis-py writes each command under a task of its own then. livesync bounds its own waits."""
    if sys.version_info >= (3, 12) or layer_redis.default_layer().get("BACKEND") != layer_redis.PUBSUB_LAYER:
        return []
    if not layer_redis.installed():
        return []  # syncapp.E012 says so
    from channels_redis.utils import create_pool

    if all(create_pool(host).make_connection().socket_timeout is None for host in layer_redis.hosts()):
        return []
    return [
        Warning(
            "The pub/sub channel layer's Redis connections have a socket timeout (redis-py's default is 5 s): on "
            "Python 3.11, sockets that connect at once then wait in line for one another's subscribe.",
            hint='Give each host "socket_timeout": None; livesync bounds its own waits on Redis (see the '
            "docs' Run in production page, Redis connections).",
            id="syncapp.W003",
        )
    ]


@register(Tags.compatibility)
def check_runserver_serves_asgi(app_configs, **kwargs):
    """``manage.py runserver`` is Django's WSGI server unless daphne's app replaces it with an ASGI one, and
    WSGI carries no WebSocket: every sync client would be refused there, with nothing saying why."""
    from django.apps import apps
    from django.core.management import get_commands

    reasons = []
    # The first installed app with a runserver command provides it (Django's own, staticfiles' or daphne's).
    runserver = get_commands().get("runserver")
    if not apps.is_installed("daphne"):
        reasons.append('"daphne" is not in INSTALLED_APPS')
    elif runserver != "daphne":
        reasons.append(f'"daphne" comes after {runserver} in INSTALLED_APPS, whose runserver replaces daphne\'s')
    if not getattr(settings, "ASGI_APPLICATION", None):
        reasons.append("ASGI_APPLICATION is not set, and daphne's runserver needs it")
    if not reasons:
        return []
    return [
        Warning(
            f"manage.py runserver cannot serve livesync's sync routes: {'; '.join(reasons)}.",
            hint='Put "daphne" first in INSTALLED_APPS and set ASGI_APPLICATION = "<project>.asgi.application", '
            "so that runserver serves the project's asgi.py; in production, run daphne <project>.asgi:application.",
            id="syncapp.W006",
        )
    ]


@register(Tags.compatibility)
def check_extras_installed(app_configs, **kwargs):
    """A setting that needs one of the package's extras (channels_redis's layer, /metrics) while the extra is
    missing: fail here, naming it, rather than at the first socket or scrape."""
    from . import metrics  # its families are made at import: not at the checks' own import, as before

    errors = []
    backend = layer_redis.default_layer().get("BACKEND")
    if isinstance(backend, str) and backend.startswith("channels_redis.") and not layer_redis.installed():
        errors.append(
            Error(
                f"CHANNEL_LAYERS['default'] is {backend}, but channels_redis is not installed: {layer_redis.INSTALL}",
                hint="Or use channels.layers.InMemoryChannelLayer for one process.",
                id="syncapp.E012",
            )
        )
    turned_on = [name for name in ("METRICS_TOKEN", "METRICS_ALLOWED_ADDRESSES") if conf.get(name) is not None]
    if turned_on and not metrics.installed():
        errors.append(
            Error(
                f"LIVESYNC[{turned_on[0]!r}] turns /metrics on, but prometheus-client is not installed: "
                f"{metrics.INSTALL}",
                hint="Or leave METRICS_TOKEN and METRICS_ALLOWED_ADDRESSES unset (None) to keep /metrics off.",
                id="syncapp.E012",
            )
        )
    return errors


@register(Tags.compatibility)
def check_settings(app_configs, **kwargs):
    errors = []
    user = getattr(settings, "LIVESYNC", {}) or {}
    for name in sorted(set(user) - set(conf.DEFAULTS)):
        errors.append(
            Error(f"LIVESYNC[{name!r}] is not a livesync setting.", hint="See syncapp/conf.py.", id="syncapp.E001")
        )
    for name in conf.HOOK_SETTINGS:
        value = conf.get(name)
        if value is None or callable(value):
            continue
        try:
            target = import_string(value)
        except ImportError as exc:
            errors.append(Error(f"LIVESYNC[{name!r}] cannot be imported: {exc}", obj=value, id="syncapp.E002"))
            continue
        if not callable(target):
            errors.append(Error(f"LIVESYNC[{name!r}] is not callable.", obj=value, id="syncapp.E003"))
    for name in (
        "PULL_CHUNK_SIZE",
        "MAX_MESSAGE_BYTES",
        "MAX_STORE_ID_LENGTH",
        "SOCKET_QUEUE_SIZE",
        "SOCKET_WRITE_BUFFER_BYTES",
        "MAX_PULLS_PER_SOCKET",
        "STORE_CACHE_SIZE",
    ):
        value = conf.get(name)
        if not isinstance(value, int) or value < 1:
            errors.append(Error(f"LIVESYNC[{name!r}] must be a positive integer.", obj=value, id="syncapp.E004"))
    if conf.get("MAX_STORE_ID_LENGTH") > 255:
        errors.append(
            Error("LIVESYNC['MAX_STORE_ID_LENGTH'] cannot exceed 255 (the Store.store_id column).", id="syncapp.E005")
        )
    threads = conf.get("DATABASE_THREADS")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        errors.append(
            Error("LIVESYNC['DATABASE_THREADS'] must be None or a positive integer.", obj=threads, id="syncapp.E004")
        )
    spare_tables = conf.get("SPARE_TABLES")
    if not isinstance(spare_tables, int) or isinstance(spare_tables, bool) or spare_tables < 0:
        errors.append(
            Error("LIVESYNC['SPARE_TABLES'] must be 0 or a positive integer.", obj=spare_tables, id="syncapp.E004")
        )
    per_second = (
        "MAX_EVENTS_PER_PUSH",
        "MAX_PUSHES_PER_SECOND",
        "MAX_PUSHES_PER_SECOND_PER_CLIENT",
        "MAX_EVENTS_PER_SECOND_PER_CLIENT",
        "REVALIDATE_INTERVAL",
    )
    for name in per_second:
        value = conf.get(name)
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            errors.append(Error(f"LIVESYNC[{name!r}] must be None or a positive number.", obj=value, id="syncapp.E009"))
    for name in ("MAX_CONNECTIONS_PER_CLIENT", "MAX_CONNECTIONS_PER_ADDRESS"):
        value = conf.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            errors.append(
                Error(f"LIVESYNC[{name!r}] must be None or a positive integer.", obj=value, id="syncapp.E004")
            )
    errors.extend(_check_store_databases())
    errors.extend(_check_metrics_access())
    errors.extend(_check_write_buffer())
    timeout = conf.get("REQUEST_HEADER_TIMEOUT")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        errors.append(
            Error("LIVESYNC['REQUEST_HEADER_TIMEOUT'] must be a positive number.", obj=timeout, id="syncapp.E007")
        )
    if not settings.DEBUG and conf.get("VALIDATE_PAYLOAD") is None and conf.get("ALLOW_ANONYMOUS") is not True:
        open_endpoints = _endpoints_without_validator()
        if open_endpoints != []:
            where = ", ".join(open_endpoints) if open_endpoints else "every endpoint"
            errors.append(
                Error(
                    f"LIVESYNC['VALIDATE_PAYLOAD'] is not set: any client can read and write every store ({where}).",
                    hint="Set an import string of a callable(payload, context) that raises to reject (e.g. "
                    "syncapp.tokens.validate_token or syncapp.access.user_access), or set "
                    "LIVESYNC['ALLOW_ANONYMOUS'] = True if the server is meant to be open.",
                    id="syncapp.E013",
                )
            )
    return errors


# Secret keys anyone can read: the example project's development fallback (livesync_project/settings.py).
PUBLIC_SECRET_KEYS = frozenset({"insecure-development-key-change-me"})
# livesync's validators that trust what SECRET_KEY signs: tokens (django.core.signing), and the session's user.
KEY_SIGNED_VALIDATORS = {
    "syncapp.tokens.validate_token": "anyone can sign a token for every store",
    "syncapp.access.user_access": "sessions signed with it can be forged",
}


@register(Tags.security)
def check_secret_key(app_configs, **kwargs):
    """A SECRET_KEY (or one of SECRET_KEY_FALLBACKS) that is public or weaker than Django asks for: an error
    with DEBUG off (Django's own check only warns, and only under ``check --deploy``), and a warning with DEBUG
    on while the payload validator trusts what the key signs."""
    weak = []
    try:
        keys = [("SECRET_KEY", settings.SECRET_KEY)]
    except ImproperlyConfigured:  # empty: Django's own checks say so
        keys = []
    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", None) or []
    keys += [(f"SECRET_KEY_FALLBACKS[{index}]", key) for index, key in enumerate(fallbacks)]
    for name, key in keys:
        weakness = _secret_key_weakness(key)
        if weakness:
            weak.append(f"{name} {weakness}")
    if not weak:
        return []
    validator = _key_signed_validator()
    if validator:
        consequence = f"LIVESYNC['VALIDATE_PAYLOAD'] is {validator}, which trusts what the key signs: "
        consequence += KEY_SIGNED_VALIDATORS[validator]
    else:
        consequence = "anyone who knows it can forge what Django signs with it, livesync's sync tokens included"
    hint = (
        f"Set SECRET_KEY to a random secret of at least {SECRET_KEY_MIN_LENGTH} characters, e.g. from "
        "django.core.management.utils.get_random_secret_key(), and keep it out of the source code."
    )
    if not settings.DEBUG:
        return [Error(f"{'; '.join(weak)}: {consequence}.", hint=hint, id="syncapp.E014")]
    if validator:
        return [Warning(f"{'; '.join(weak)}: {consequence}.", hint=hint, id="syncapp.W005")]
    return []


def _secret_key_weakness(key):
    """Why ``key`` is no secret, or None."""
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    if not isinstance(key, str):
        return None
    if key in PUBLIC_SECRET_KEYS:
        return "is the example project's public development key"
    if len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return (
            f"is shorter than {SECRET_KEY_MIN_LENGTH} characters or has fewer than "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones"
        )
    return None


def _key_signed_validator():
    """The import path of KEY_SIGNED_VALIDATORS that VALIDATE_PAYLOAD names (or is), or None."""
    configured = conf.get("VALIDATE_PAYLOAD")
    if configured is None:
        return None
    for path in KEY_SIGNED_VALIDATORS:
        if configured == path:
            return path
        try:
            if configured is import_string(path):
                return path
        except ImportError:
            continue
    return None


def _endpoints_without_validator():
    """The project's sync endpoints without a validator of their own, from its ASGI application (None when
    it cannot be built here: then every endpoint is assumed to rely on VALIDATE_PAYLOAD)."""
    application = getattr(settings, "ASGI_APPLICATION", None)
    if application:
        try:
            import_string(application)
        except Exception:  # noqa: BLE001 - the server reports its own start-up errors
            return None
    return mounts.unguarded()


def _check_store_databases():
    """Every alias of STORE_DATABASES must be a database of the project, named once: a store placed in an
    alias that is missing later could not be found."""
    aliases = conf.get("STORE_DATABASES")
    if aliases is None:
        return []
    if isinstance(aliases, str) or not isinstance(aliases, (list, tuple)) or not aliases:
        return [
            Error(
                "LIVESYNC['STORE_DATABASES'] must be None or a non-empty list of aliases.",
                obj=aliases,
                id="syncapp.E010",
            )
        ]
    errors = []
    unknown = [alias for alias in aliases if alias not in settings.DATABASES]
    if unknown:
        errors.append(
            Error(
                "LIVESYNC['STORE_DATABASES'] names databases that DATABASES does not have: "
                f"{', '.join(map(str, unknown))}.",
                hint="Add them to DATABASES, and run manage.py migrate --database=<alias> for each.",
                id="syncapp.E010",
            )
        )
    if len(set(aliases)) != len(aliases):
        errors.append(Error("LIVESYNC['STORE_DATABASES'] names a database twice.", obj=aliases, id="syncapp.E010"))
    return errors


def _check_metrics_access():
    """A metrics token must be a secret worth the name, and every allowed address a network ``ipaddress`` reads."""
    import ipaddress

    errors = []
    token = conf.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        errors.append(
            Error("LIVESYNC['METRICS_TOKEN'] must be None or a string of at least 16 characters.", id="syncapp.E011")
        )
    allowed = conf.get("METRICS_ALLOWED_ADDRESSES")
    if allowed is None:
        return errors
    if isinstance(allowed, str) or not isinstance(allowed, (list, tuple)):
        return [*errors, Error("LIVESYNC['METRICS_ALLOWED_ADDRESSES'] must be None or a list.", id="syncapp.E011")]
    for network in allowed:
        try:
            ipaddress.ip_network(network, strict=False)
        except (TypeError, ValueError):
            errors.append(
                Error(
                    f"LIVESYNC['METRICS_ALLOWED_ADDRESSES'] has {network!r}, which is no address or network.",
                    id="syncapp.E011",
                )
            )
    return errors


def _check_write_buffer():
    """A pull sends its next page once less than PULL_PAUSE_BYTES wait, and a page or a broadcast may be as
    large as the largest accepted frame: a smaller limit would close sockets whose clients read fine."""
    from .server.websocket import PULL_PAUSE_BYTES

    limit, largest = conf.get("SOCKET_WRITE_BUFFER_BYTES"), conf.get("MAX_MESSAGE_BYTES")
    if not isinstance(limit, int) or not isinstance(largest, int) or limit >= PULL_PAUSE_BYTES + 2 * largest:
        return []
    return [
        Error(
            f"LIVESYNC['SOCKET_WRITE_BUFFER_BYTES'] must be at least {PULL_PAUSE_BYTES + 2 * largest} "
            "(1 MB of paused pull plus two of the largest frames, MAX_MESSAGE_BYTES).",
            obj=limit,
            id="syncapp.E006",
        )
    ]


@register(Tags.database)
def check_prepared_statements_behind_a_pooler(app_configs, databases=None, **kwargs):
    """A pooler in transaction mode may run a prepared statement's name on another server connection.

    There the name can stand for another client's statement: livesync's statements name their store's table,
    so a push could run against another store's table. PgBouncer keeps prepared statements apart from 1.21 on
    (``max_prepared_statements`` above 0); older poolers do not. A pooler answers the connection's start with
    a process id of its own, not the server's (``pg_backend_pid()``), which is how it is detected. Like every
    check that queries a database, this runs for ``migrate`` and ``check --database``.
    """
    from django.db import connections

    from .storage import placement

    warnings = []
    for alias in placement.store_databases():
        if databases is None or alias not in databases:
            continue
        connection = connections[alias]
        if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
            continue
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (server_pid,) = cursor.fetchone()
        if server_pid != connection.connection.info.backend_pid:
            warnings.append(
                Warning(
                    f"Database {alias!r} prepares statements (OPTIONS['prepare_threshold']) and is reached through "
                    "a connection pooler: one that does not keep prepared statements apart per server connection "
                    "can run a push's statement against another store's table.",
                    hint="Set OPTIONS['prepare_threshold'] to None, or use PgBouncer 1.21 or later with "
                    "max_prepared_statements above 0 and add 'syncapp.W004' to SILENCED_SYSTEM_CHECKS.",
                    id="syncapp.W004",
                )
            )
    return warnings


# PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
_LONGEST_SCHEMA_NAME = 63


@register(Tags.compatibility)
def check_store_schema(app_configs, **kwargs):
    """``STORE_SCHEMA`` is written into livesync's statements as a quoted identifier: a name PostgreSQL would
    cut short, or one that a quote would end early, cannot be used as given."""
    schema = conf.get("STORE_SCHEMA")
    if schema is None:
        return []
    if isinstance(schema, str) and schema and '"' not in schema and len(schema.encode()) <= _LONGEST_SCHEMA_NAME:
        return []
    return [
        Error(
            f"LIVESYNC['STORE_SCHEMA'] must be None or a PostgreSQL schema name: a non-empty string of at most "
            f'{_LONGEST_SCHEMA_NAME} bytes without a double quote (")',
            obj=schema,
            id="syncapp.E015",
        )
    ]
