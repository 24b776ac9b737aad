"""The reference worker's plain-HTTP answers: the info text, ``Invalid path``, and 426 on ``…/websocket``."""

import asyncio

from channels.layers import get_channel_layer
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .. import conf, metrics, storage
from ..fanout import handover
from ..protocol.generations import V03
from ..storage import db
from . import handshake
from .cors import cors_headers

INFO_TEXT = "Info: WebSocket sync backend endpoint for @livestore/sync-cf."


def _cors_headers(request):
    return cors_headers(request.headers.get("Access-Control-Request-Headers"))


def _text(request, body, status):
    response = HttpResponse(body, status=status, content_type="text/plain")
    for name, value in _cors_headers(request).items():
        response[name] = value
    return response


def _preflight(request):
    response = HttpResponse(status=204)
    for name, value in _cors_headers(request).items():
        response[name] = value
    return response


# The reference's answers change nothing and read no cookie, so a cross-site POST gets what the reference
# answers (400 Invalid path), not Django's CSRF page.
@csrf_exempt
def info(request):
    """``GET /``: the reference's info text; any other method is an invalid path."""
    if request.method == "GET":
        return _text(request, INFO_TEXT, 200)
    return invalid_path(request)


@csrf_exempt
def invalid_path(request, *args, **kwargs):
    if request.method == "OPTIONS" and conf.get("ENABLE_CORS"):
        return _preflight(request)
    return _text(request, "Invalid path", 400)


async def websocket_without_upgrade(request):
    """``…/websocket`` over plain HTTP: the handshake checks, then 426 as the reference does.

    A refusal is the client's mistake, logged by livesync at WARNING with its reason, not by Django (which
    would log the reference's 500 for a missing storeId as ``ERROR Internal Server Error``).
    """
    if request.method == "OPTIONS" and conf.get("ENABLE_CORS"):
        return _preflight(request)
    scope = getattr(request, "scope", None)
    try:
        await handshake.check(
            request.META.get("QUERY_STRING", ""), request.headers.get("Origin"), scope, request=request
        )
    except handshake.Refused as refused:
        handshake.log_refused(refused, scope, V03)
        response = _text(request, refused.body, refused.status)
        # Django's log_response skips a response marked as logged already.
        response._has_been_logged = True
        return response
    return _text(request, "Durable Object expected Upgrade: websocket", 426)


HEALTH_TIMEOUT_SECONDS = 2


async def _layer_round_trip():
    layer = get_channel_layer()
    channel = await layer.new_channel(prefix="livesync.health.")
    await layer.send(channel, {"type": "livesync.health"})
    await layer.receive(channel)


async def _probe(check):
    try:
        await asyncio.wait_for(check(), HEALTH_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
        return f"unreachable: {type(exc).__name__}: {exc}"
    return "ok"


async def metrics_view(request):
    """This process's metrics in Prometheus' text format, for whom ``METRICS_TOKEN`` /
    ``METRICS_ALLOWED_ADDRESSES`` admit (off until one is set, and without prometheus-client)."""
    refusal = metrics.scrape_refusal(request)
    if refusal is not None:
        status, text = refusal
        response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = "Bearer"
        return response
    await handover.take_committed_elsewhere()
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


async def healthz(request):
    """For load balancers: 200 when the database and the channel layer answer, else 503 saying which.

    Anyone may ask, so a failure reads ``unreachable`` alone. Why (the exception, which names internal hosts
    and ports: ``Error 111 connecting to 10.0.3.7:6379``) is told to active staff users and to requests
    carrying ``Authorization: Bearer <METRICS_TOKEN>``.
    """
    from hmac import compare_digest

    report = {
        "database": await _probe(lambda: db.run(storage.ping)),
        "channel_layer": await _probe(_layer_round_trip),
    }
    healthy = all(value == "ok" for value in report.values())
    if not healthy:
        token = conf.get("METRICS_TOKEN")
        sent = request.headers.get("Authorization", "")
        detailed = isinstance(token, str) and bool(token) and compare_digest(sent.encode(), f"Bearer {token}".encode())
        # The session's user, without AuthenticationMiddleware anonymous, and unknown while the database is down.
        if not detailed and report["database"] == "ok" and hasattr(request, "auser"):
            try:
                user = await request.auser()
            except Exception:  # noqa: BLE001 - a user who cannot be read is anonymous
                user = None
            detailed = user is not None and user.is_active and user.is_staff
        if not detailed:
            report = {name: "ok" if value == "ok" else "unreachable" for name, value in report.items()}
    return JsonResponse(report, status=200 if healthy else 503)
