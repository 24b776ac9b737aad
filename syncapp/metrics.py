"""livesync's Prometheus metrics, one set per server process, and who may read them at ``/metrics``.

The families live in prometheus-client's default registry, so the endpoint
also shows the client library's process metrics (CPU, memory, open files) and
any metrics of the project's own. Every label takes a small, fixed set of
values (a protocol generation, a transport, an outcome): never a storeId, so
the number of series does not grow with the number of stores.

Each daphne process counts its own traffic: scrape every process (each
listens on a port of its own), and sum across them in the queries. Events
committed by a process nobody scrapes (``manage.py livesync_commit``, a
worker, a shell) are counted by the server processes instead: with Redis as
the channel layer that process hands them over (``syncapp.fanout.handover``),
and the next scrape of any server process takes them into its own counter, so
each is counted once, where a scrape sees it.

prometheus-client comes with the ``[metrics]`` extra. Without it every family
is a no-op, ``/metrics`` answers 404 as when it is off, and a setting that
turns it on fails ``manage.py check`` (syncapp.E012).
"""

import ipaddress
import logging
import secrets
import time

from . import conf

logger = logging.getLogger("syncapp")

try:
    from prometheus_client import Counter, Gauge, Histogram
except ImportError:
    Counter = Gauge = Histogram = None  # type: ignore[misc,assignment]

# What a project that turns /metrics on must install without it.
INSTALL = 'pip install "django-livestore-sync[metrics]"'


def installed():
    """Whether prometheus-client (the ``[metrics]`` extra) is installed."""
    return Counter is not None


class _Off:
    """A family while ``LIVESYNC["METRICS"]`` is False or prometheus-client is missing: every count does nothing."""

    def labels(self, *values):
        return self

    def inc(self, amount=1):
        pass

    dec = set = observe = inc


def _family(kind, *args, **kwargs):
    return kind(*args, **kwargs) if installed() and conf.get("METRICS") else _Off()


# Seconds: from well under a millisecond (a push on SQLite) to a database that stalls.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SOCKETS = _family(Gauge, "livesync_sockets", "Sync WebSockets connected to this process.", ["generation"])
HANDSHAKES = _family(
    Counter,
    "livesync_handshakes_total",
    "Sync connection requests (WebSocket upgrades, 0.4 HTTP requests), accepted or refused, and why.",
    ["generation", "transport", "outcome"],
)
PUSHES = _family(Counter, "livesync_pushes_total", "Pushes answered, by outcome.", ["generation", "outcome"])
EVENTS_COMMITTED = _family(Counter, "livesync_events_committed_total", "Events committed, by origin.", ["origin"])
PUSH_SECONDS = _family(
    Histogram,
    "livesync_push_seconds",
    "From a push reaching the sync core to its answer being sent (durable before it).",
    ["generation"],
    buckets=LATENCY_BUCKETS,
)
COMMIT_GROUP_PUSHES = _family(
    Histogram,
    "livesync_commit_group_pushes",
    "Pushes committed together (group commit: one transaction per database).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
FANOUT_SECONDS = _family(
    Histogram,
    "livesync_fanout_seconds",
    "From a batch's commit to this process handing it to the store's sockets: pushed here (local) or in "
    "another process (remote, through the channel layer).",
    ["path"],
    buckets=LATENCY_BUCKETS,
)
BROADCASTS_KEPT_LOCAL = _family(
    Counter,
    "livesync_broadcasts_kept_local_total",
    "Pushes' broadcasts not sent through the channel layer, because no other process follows their store.",
)
REPAIRS = _family(
    Counter,
    "livesync_repairs_total",
    "Subscribers that caught up from storage: a gap in the broadcasts, or a head check that found the head moved.",
    ["cause"],
)
UNAVAILABLE = _family(
    Counter,
    "livesync_unavailable_total",
    "A service found unreachable: the channel layer (once per outage) or the database (per failed call).",
    ["service"],
)
EVENT_LOOP_BEHIND = _family(
    Counter,
    "livesync_event_loop_behind_seconds_total",
    "Seconds the event loop ran behind its timers (busy or blocked): a wait on Redis is not failed for them.",
)
DATABASE_WAITING = _family(Gauge, "livesync_database_waiting_calls", "Database calls waiting for a thread of the pool.")
PULL_EVENTS = _family(
    Counter, "livesync_pull_events_total", "Events sent in pull answers (not live broadcasts).", ["generation"]
)
PULL_BYTES = _family(Counter, "livesync_pull_bytes_total", "Bytes of pull answers sent.", ["generation"])


def count_push(generation, outcome, started):
    """A push answered with ``outcome`` (a label), ``started`` by ``time.perf_counter()``."""
    PUSHES.labels(generation, outcome).inc()
    PUSH_SECONDS.labels(generation).observe(time.perf_counter() - started)


def scrape_refusal(request):
    """Why ``request`` may not read the metrics (``(status, text)``), or None when it may.

    Off (404) until ``METRICS_TOKEN`` or ``METRICS_ALLOWED_ADDRESSES`` is set;
    a request must then pass every check that is set.
    """
    token, allowed = conf.get("METRICS_TOKEN"), conf.get("METRICS_ALLOWED_ADDRESSES")
    if token is None and allowed is None:
        return 404, "Metrics are off: set LIVESYNC['METRICS_TOKEN'] or LIVESYNC['METRICS_ALLOWED_ADDRESSES']."
    if not installed():
        return 404, f"Metrics are off: prometheus-client is not installed ({INSTALL})."
    if token is not None:
        sent = request.headers.get("Authorization", "")
        if not secrets.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return 401, "A bearer token is required."
    if allowed is not None and not _address_allowed(request.META.get("REMOTE_ADDR"), allowed):
        return 403, "This address may not read the metrics."
    return None


def exposition():
    """``(body, content type)``: the default registry in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _address_allowed(address, allowed):
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(network, strict=False) for network in allowed)
