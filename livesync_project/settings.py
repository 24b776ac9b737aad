"""Settings of the example project that serves livesync.

Everything deployment-specific comes from the environment (see the README):
unset, it runs on the embedded default, a SQLite file beside this project and
the in-memory channel layer.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.checks.security.base import SECRET_KEY_MIN_LENGTH, SECRET_KEY_MIN_UNIQUE_CHARACTERS
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_flag("DJANGO_DEBUG", default=True)
# The development fallback is public (it is in this file): sessions, CSRF tokens and livesync's signed tokens
# (syncapp.tokens) made with it can be forged by anyone. With DEBUG off the project refuses to start without
# a key of its own at least as strong as Django asks for (50 characters, 5 different ones); `manage.py check`
# says the same of any project (syncapp.E014).
DEVELOPMENT_SECRET_KEY = "insecure-development-key-change-me"  # noqa: S105 - public, refused with DEBUG off
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or DEVELOPMENT_SECRET_KEY
if not DEBUG and (
    SECRET_KEY == DEVELOPMENT_SECRET_KEY
    or len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is false, so DJANGO_SECRET_KEY must be set to a secret of your own of at least "
        f"{SECRET_KEY_MIN_LENGTH} characters ({SECRET_KEY_MIN_UNIQUE_CHARACTERS} or more different ones), e.g. "
        "from `python -c 'import secrets; print(secrets.token_urlsafe(50))'`: anyone can sign sessions and sync "
        "tokens with the example's development key."
    )
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",") if h.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "syncapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "livesync_project.urls"
ASGI_APPLICATION = "livesync_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "livesync_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite runs in WAL mode (readers never wait for the writer) and starts every
# transaction with BEGIN IMMEDIATE, so two writers queue on the lock instead of
# failing with "database is locked" when one upgrades a read to a write.
# synchronous=FULL syncs the WAL on every commit: an acknowledged push survives
# a power cut, not only a crash of the process.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
}

# No CONN_HEALTH_CHECKS: they cost a "SELECT 1" round trip before every push.
# A connection that failed is still replaced: Django closes connections whose
# last query errored, and livesync's database pool (syncapp.storage.db) asks it to
# after every call.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
# More databases to spread stores over, comma-separated URLs, as the aliases stores_1, stores_2, …
# (each needs `manage.py migrate --database=stores_N`). Unset: every store lives in the default database.
STORE_DATABASE_URLS = [
    url.strip() for url in os.environ.get("LIVESYNC_STORE_DATABASE_URLS", "").split(",") if url.strip()
]
for _number, _url in enumerate(STORE_DATABASE_URLS, start=1):
    DATABASES[f"stores_{_number}"] = dj_database_url.parse(_url, conn_max_age=DATABASES["default"]["CONN_MAX_AGE"])
# Statements are not prepared unless DATABASE_PREPARED_STATEMENTS=true (Django's own default). Behind a
# connection pooler in transaction mode that does not keep prepared statements apart per server connection
# (PgBouncer before 1.21), a prepared name can run on a server connection where it means another client's
# statement: livesync's name a store's table, so a push could write into another store's table. On a direct
# connection, or PgBouncer 1.21+ with max_prepared_statements above 0, turning it on makes psycopg prepare a
# statement the fifth time a connection runs it: 22% more batch-1 pushes here. `manage.py check --database
# default` warns (syncapp.W004) when it is on and a pooler sits in between.
POSTGRES_OPTIONS = {"prepare_threshold": 5 if env_flag("DATABASE_PREPARED_STATEMENTS", default=False) else None}
for _database in DATABASES.values():
    if _database["ENGINE"] == "django.db.backends.sqlite3":
        _database["OPTIONS"] = {**SQLITE_OPTIONS, **_database.get("OPTIONS", {})}
    elif _database["ENGINE"] == "django.db.backends.postgresql":
        _database["OPTIONS"] = {**POSTGRES_OPTIONS, **_database.get("OPTIONS", {})}

# Redis: REDIS_URL names one host, or several (comma-separated) that channels_redis shards groups over. Or
# REDIS_SENTINELS (host:port, comma-separated) and REDIS_SENTINEL_MASTER (a master's name, or several
# comma-separated, one host each) name masters that Sentinel fails over. See the README's "Production".
REDIS_URL = os.environ.get("REDIS_URL")
REDIS_SENTINELS = os.environ.get("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER")
# channels_redis's two layers. "pubsub" (the default) costs one PUBLISH per push and half the server CPU
# of "core", which keeps groups in Redis (about 16 commands per push); livesync's hub bounds the pub/sub
# layer's queue and detects its outages itself (syncapp/fanout/hub.py). See the README's "Channel layers".
DEFAULT_REDIS_CHANNEL_LAYER = "pubsub"
REDIS_CHANNEL_LAYERS = {
    # No socket timeout (redis-py's default is 5 s): livesync bounds each of its calls to Redis itself. On
    # Python 3.11 redis-py writes each command under a task of its own when one is set, and sockets joining at
    # once then wait in line for one another's subscribe: the 50th of 50 waited 0.5 s.
    "pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {},
        "HOST": {"socket_timeout": None},
    },
    # Longer than this layer's 5 s blocking read, which a shorter timeout would cut as a failure every time a
    # process is idle.
    "core": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"capacity": 1000},
        "HOST": {"socket_timeout": 10},
    },
}


def _split(value):
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def redis_hosts(urls=None, sentinels=None, master_names=None):
    """channels_redis hosts: one per URL of ``urls``, or one per master of ``master_names`` found through
    ``sentinels`` (each a comma-separated string, as the environment gives them)."""
    if urls and sentinels:
        raise ImproperlyConfigured("Set REDIS_URL or REDIS_SENTINELS, not both")
    if not sentinels:
        return _split(urls)
    if not _split(master_names):
        raise ImproperlyConfigured("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the name of the master to use")
    addresses = []
    for sentinel in _split(sentinels):
        host, _, port = sentinel.rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_SENTINELS: {sentinel!r} is not host:port")
        addresses.append((host, int(port)))
    return [{"sentinels": addresses, "master_name": name} for name in _split(master_names)]


def redis_channel_layer(hosts, kind=DEFAULT_REDIS_CHANNEL_LAYER):
    """The ``CHANNEL_LAYERS["default"]`` of the Redis layer ``kind`` (a key of REDIS_CHANNEL_LAYERS) on ``hosts``:
    a URL, or a list of URLs and Sentinel hosts (``{"sentinels": [(host, port)], "master_name": name}``)."""
    if kind not in REDIS_CHANNEL_LAYERS:
        raise ImproperlyConfigured(f"LIVESYNC_CHANNEL_LAYER must be one of {', '.join(REDIS_CHANNEL_LAYERS)}")
    layer = REDIS_CHANNEL_LAYERS[kind]
    entries = [hosts] if isinstance(hosts, str) else hosts
    config_hosts = [{**(host if isinstance(host, dict) else {"address": host}), **layer["HOST"]} for host in entries]
    return {"BACKEND": layer["BACKEND"], "CONFIG": {"hosts": config_hosts, **layer["CONFIG"]}}


REDIS_HOSTS = redis_hosts(REDIS_URL, REDIS_SENTINELS, REDIS_SENTINEL_MASTER)
if REDIS_HOSTS:
    _redis_layer = os.environ.get("LIVESYNC_CHANNEL_LAYER", DEFAULT_REDIS_CHANNEL_LAYER)
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_HOSTS, _redis_layer)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}

_database_threads = os.environ.get("LIVESYNC_DATABASE_THREADS")
_spare_tables = os.environ.get("LIVESYNC_SPARE_TABLES")
LIVESYNC = {
    # Unset: the admin frames (AdminResetRoomReq / AdminInfoReq) are off.
    "ADMIN_SECRET": os.environ.get("LIVESYNC_ADMIN_SECRET") or None,
    # An import string (e.g. syncapp.tokens.validate_token for signed tokens), else the example's fixed token.
    "VALIDATE_PAYLOAD": os.environ.get("LIVESYNC_VALIDATE_PAYLOAD")
    or ("livesync_project.auth.validate_payload" if os.environ.get("LIVESYNC_AUTH_TOKEN") else None),
    # LIVESYNC_ALLOW_ANONYMOUS=true: a server with DEBUG off and no validator is open on purpose (without it,
    # `manage.py check` and `migrate` fail with syncapp.E013).
    "ALLOW_ANONYMOUS": env_flag("LIVESYNC_ALLOW_ANONYMOUS", default=False),
    # Unset: livesync's default (one thread on SQLite, four elsewhere).
    "DATABASE_THREADS": int(_database_threads) if _database_threads else None,
    # /metrics: unset, it is off. A bearer token, and/or the addresses (comma-separated) that may scrape it.
    "METRICS_TOKEN": os.environ.get("LIVESYNC_METRICS_TOKEN") or None,
    "METRICS": env_flag("LIVESYNC_METRICS", default=True),
    "METRICS_ALLOWED_ADDRESSES": [
        address.strip()
        for address in os.environ.get("LIVESYNC_METRICS_ALLOWED_ADDRESSES", "").split(",")
        if address.strip()
    ]
    or None,
    # Unset LIVESYNC_STORE_DATABASE_URLS: the default database alone.
    "STORE_DATABASES": list(DATABASES) if STORE_DATABASE_URLS else None,
}
# Unset: livesync's default (64 empty tables kept ready per PostgreSQL store database; 0 turns them off).
if _spare_tables:
    LIVESYNC["SPARE_TABLES"] = int(_spare_tables)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The TodoMVC demo's Vite build (`make demo`), served at /demo/ by livesync_project.demo.
DEMO_ROOT = BASE_DIR / "examples" / "todomvc" / "dist"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# LIVESYNC_LOG_FORMAT=json: one JSON object per line, with the store, connection and client each record is about.
LOG_FORMAT = os.environ.get("LIVESYNC_LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LIVESYNC_LOG_FORMAT must be plain or json")
# Every record goes to the one console handler, in the one format: livesync's, Django's, daphne's and, at daphne's
# -v 2, Twisted's (daphne hands them to the logger daphne.server), asyncio's and warnings (through the root).
_console_only = {"handlers": ["console"], "propagate": False}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # "redact": no sync payload (auth token) in what this handler writes (see syncapp.logcontext.redact).
    "filters": {
        "connection": {"()": "syncapp.logcontext.ContextFilter"},
        "redact": {"()": "syncapp.logcontext.RedactingFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-8s %(name)s %(message)s"},
        "json": {"()": "syncapp.logcontext.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["connection", "redact"]}
    },
    # No level: daphne's -v sets the root's (INFO by default), and commands keep Python's WARNING.
    "root": {"handlers": ["console"]},
    "loggers": {
        "syncapp": {**_console_only, "level": os.environ.get("LIVESYNC_LOG_LEVEL", "INFO")},
        # Instead of Django's default handlers, which write plain text of their own (twice under DEBUG).
        "django": {**_console_only, "level": "INFO"},
        "django.server": {**_console_only, "level": "INFO"},
        # daphne's access lines: plain, daphne writes them to stdout as ever; JSON, they are records like the rest
        # (syncapp.logcontext.redact_server_logs routes them to this logger once it has a handler).
        **({"daphne.access": {**_console_only, "level": "INFO"}} if LOG_FORMAT == "json" else {}),
    },
}
