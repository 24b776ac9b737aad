"""The reference worker's plain-HTTP answers: the info text, ``Invalid path``, and 426 on ``…/websocket``."""

from django.http import HttpResponse

from . import conf, handshake

INFO_TEXT = "Info: WebSocket sync backend endpoint for @livestore/sync-cf."


def _cors_headers(request):
    if not conf.get("ENABLE_CORS"):
        return {}
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
    }


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


def info(request):
    """``GET /``: the reference's info text; any other method is an invalid path."""
    if request.method == "GET":
        return _text(request, INFO_TEXT, 200)
    return invalid_path(request)


def invalid_path(request, *args, **kwargs):
    if request.method == "OPTIONS" and conf.get("ENABLE_CORS"):
        return _preflight(request)
    return _text(request, "Invalid path", 400)


async def websocket_without_upgrade(request):
    """``…/websocket`` over plain HTTP: the handshake checks, then 426 as the reference does."""
    if request.method == "OPTIONS" and conf.get("ENABLE_CORS"):
        return _preflight(request)
    try:
        await handshake.check(
            request.META.get("QUERY_STRING", ""), request.headers.get("Origin"), getattr(request, "scope", None)
        )
    except handshake.Refused as refused:
        return _text(request, refused.body, refused.status)
    return _text(request, "Durable Object expected Upgrade: websocket", 426)
