"""The connection request: its Host and Origin, ``storeId`` and ``payload`` search params, and the payload check.

Shared by the WebSocket consumers (before the upgrade), the 0.4 HTTP endpoint
(before its body is read) and the plain-HTTP view of ``…/websocket`` (which
answers 426 once the request would have been valid), so all refuse a request
with the same status and text.

The sync endpoints run outside Django's request cycle (Channels routes them
around it), so Django's own defences are applied here: the ``Host`` is
validated as ``request.get_host()`` validates it (``ALLOWED_HOSTS``, with
DEBUG's localhost allowance), and a browser's ``Origin`` must be the request's
own origin, one of ``CSRF_TRUSTED_ORIGINS`` or one of
``LIVESYNC["ALLOWED_ORIGINS"]`` (``CsrfViewMiddleware``'s rule for unsafe
requests). A request that carries the session cookie is held to that rule
even when ``ALLOWED_ORIGINS`` holds ``"*"``; over the 0.4 HTTP transport it
must also pass the middleware's Referer check over HTTPS when it has no
Origin. Clients that send no Origin (Node, native apps) are only checked for
their Host.
"""

import io
import json
import logging
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.utils.http import is_same_domain

from .. import conf, logcontext, storage
from ..context import READ_ONLY, SyncContext
from ..protocol.generations import V03, V04
from ..storage import db

logger = logging.getLogger("syncapp")


class Refused(Exception):
    """The request is refused before the upgrade with an HTTP ``status`` and text body.

    ``reason`` names the check that refused it, for the metrics: one of
    ``host``, ``origin``, ``csrf``, ``search_params``, ``path``, ``payload``,
    ``unknown_store``. ``detail`` says more, for the log only (the client is
    not told which hosts or origins are trusted).
    """

    def __init__(self, status, body, store_id=None, reason="search_params", detail=None):
        super().__init__(body)
        self.status = status
        self.body = body
        self.store_id = store_id
        self.reason = reason
        self.detail = detail


_SEARCH_PARAMS_SCHEMA = (
    "{ readonly storeId: string; readonly payload: (StringFromUriComponent <-> (parseJson <-> JsonValue)) | undefined }"
)


def _invalid_search_params(detail):
    # The reference answers 500 with Effect Schema's description of the params.
    return Refused(500, f"Invalid search params: {_SEARCH_PARAMS_SCHEMA}\n{detail}")


def store_id_problem(store_id):
    """What makes ``store_id`` unusable ("must be 1 to N printable characters"), or None: one rule for
    clients, the admin and the commands."""
    max_length = conf.get("MAX_STORE_ID_LENGTH")
    if not store_id or len(store_id) > max_length or not store_id.isprintable():
        return f"must be 1 to {max_length} printable characters"
    return None


def parse_search_params(query_string):
    """``(store_id, payload)`` from a raw query string, or raise Refused.

    The client encodes ``payload`` twice (``encodeURIComponent(JSON.stringify(p))``,
    then the query builder), so it is unquoted once more after the usual parse.
    An absent payload is None, as the reference's ``undefined``.
    """
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    params = parse_qs(query_string, keep_blank_values=True)
    store_ids = params.get("storeId")
    if not store_ids:
        raise _invalid_search_params('└─ ["storeId"]\n   └─ is missing')
    store_id = store_ids[0]
    problem = store_id_problem(store_id)
    if problem is not None:
        raise _invalid_search_params(f'└─ ["storeId"]\n   └─ {problem}')
    payload = None
    if "payload" in params:
        try:
            payload = json.loads(unquote(params["payload"][0], errors="strict"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _invalid_search_params(f'└─ ["payload"]\n   └─ is not URI-encoded JSON: {exc}') from None
    return store_id, payload


# What a WebSocket's scheme is to Django, which knows only HTTP's.
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}


def request_of(scope):
    """A Django request for the headers of an ASGI scope (HTTP or WebSocket), without its body; None without a
    scope. Django's own code then reads its Host (``get_host()``) and scheme (``is_secure()``, which honours
    ``SECURE_PROXY_SSL_HEADER``)."""
    if not scope:
        return None
    scheme = scope.get("scheme")
    http_scope = {
        **scope,
        "type": "http",
        "path": scope.get("path") or "/",
        "method": scope.get("method") or "GET",
        "scheme": _HTTP_SCHEMES.get(scheme, scheme),
    }
    return ASGIRequest(http_scope, io.BytesIO())


def _trusted_origin(origin):
    """Whether ``origin`` is one of ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` takes subdomains, as in
    ``CsrfViewMiddleware``) or listed in ``ALLOWED_ORIGINS`` itself."""
    if origin in (conf.get("ALLOWED_ORIGINS") or ()):
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in trusted:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        parsed.scheme == pattern.scheme and is_same_domain(parsed.netloc, pattern.netloc.lstrip("*"))
        for pattern in (urlsplit(entry) for entry in trusted if "*" in entry)
    )


def origin_allowed(origin, request=None, credentialed=False):
    """Whether a request with this Origin header (None when absent) may connect; clients without one always may.

    Allowed: the request's own origin (scheme and Host of ``request``), ``CSRF_TRUSTED_ORIGINS`` and the
    origins ``ALLOWED_ORIGINS`` lists; any origin when that list holds ``"*"``, unless the request is
    ``credentialed`` (it carries the session cookie).
    """
    if origin is None:
        return True
    if not credentialed and "*" in (conf.get("ALLOWED_ORIGINS") or ()):
        return True
    if request is not None:
        try:
            own = f"{'https' if request.is_secure() else 'http'}://{request.get_host()}"
        except DisallowedHost:
            own = None
        if origin == own:
            return True
    return _trusted_origin(origin)


def has_session_cookie(request):
    return request is not None and settings.SESSION_COOKIE_NAME in request.COOKIES


def _referer_problem(request):
    """Why the Referer of a secure request without an Origin fails ``CsrfViewMiddleware``'s check, or None."""
    referer = request.META.get("HTTP_REFERER")
    if referer is None:
        return "Referer checking failed - no Referer"
    try:
        parsed = urlsplit(referer)
    except ValueError:
        return "Referer checking failed - Referer is malformed"
    if "" in (parsed.scheme, parsed.netloc):
        return "Referer checking failed - Referer is malformed"
    if parsed.scheme != "https":
        return "Referer checking failed - Referer is insecure while host is secure"
    trusted_hosts = [urlsplit(origin).netloc.lstrip("*") for origin in settings.CSRF_TRUSTED_ORIGINS]
    if any(is_same_domain(parsed.netloc, host) for host in trusted_hosts):
        return None
    good = settings.SESSION_COOKIE_DOMAIN if settings.CSRF_USE_SESSIONS else settings.CSRF_COOKIE_DOMAIN
    if good is None:
        try:
            good = request.get_host()
        except DisallowedHost:
            good = None
    elif request.get_port() not in ("443", "80"):
        good = f"{good}:{request.get_port()}"
    if good is None or not is_same_domain(parsed.netloc, good):
        return f"Referer checking failed - {referer} does not match any trusted origins"
    return None


def check_site(request, origin, csrf=False):
    """Refuse a request for a Host Django would refuse, or from a browser Origin that is not trusted.

    ``csrf``: the request may change data with the session's rights without a browser's CORS preflight (the
    0.4 HTTP transport), so one that carries the session cookie and no Origin must pass the Referer check
    over HTTPS, as ``CsrfViewMiddleware`` requires of an unsafe request.
    """
    if request is None:
        return
    try:
        request.get_host()
    except DisallowedHost as exc:
        raise Refused(400, "Host not allowed", reason="host", detail=str(exc)) from None
    credentialed = has_session_cookie(request)
    if not origin_allowed(origin, request, credentialed):
        scheme = "https" if request.is_secure() else "http"
        cookie = ", and the request carries the session cookie" if credentialed else ""
        detail = (
            f"Origin {origin!r} is neither this server's ({scheme}://{request.get_host()}) nor trusted "
            f"(CSRF_TRUSTED_ORIGINS, LIVESYNC['ALLOWED_ORIGINS']){cookie}"
        )
        raise Refused(403, "Origin not allowed", reason="origin", detail=detail)
    if csrf and origin is None and credentialed and request.is_secure():
        problem = _referer_problem(request)
        if problem is not None:
            raise Refused(403, "CSRF verification failed", reason="csrf", detail=problem)


def scope_origin(scope):
    """The Origin header of an ASGI scope, or None."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"origin":
            return value.decode("latin-1")
    return None


# The reference's text for a rejected payload, per protocol generation: the
# validator's error wrapped in 0.3's UnexpectedError or 0.4's UnknownError.
_REJECTED_PAYLOAD = {
    V03: 'LiveStore.UnexpectedError: {{ "cause": Error: {}, "note": undefined, "payload": undefined }}',
    V04: 'UnknownError: {{ "cause": Error: {}, "note": undefined, "payload": undefined }}',
}


async def validate_payload(context, override=None):
    """Run the payload validator on ``context``; raise Refused(400, …) when it rejects.

    A validator that returns ``READ_ONLY`` accepts the connection for reading only.
    """
    validator = conf.hook("VALIDATE_PAYLOAD", override)
    if validator is None:
        return
    try:
        verdict = await validator(context.payload, context)
    except Exception as exc:
        raise Refused(400, _REJECTED_PAYLOAD[context.generation].format(exc), reason="payload") from None
    context.read_only = verdict == READ_ONLY


async def check(query_string, origin, scope, override=None, generation=V03, request=None, csrf=False):
    """The ``SyncContext`` of an acceptable connection request, or raise Refused.

    ``scope`` is the request's ASGI scope, handed to the validator (None when the
    request did not come through ASGI, as under Django's test client).
    ``generation`` ("0.3" or "0.4") picks the reference's refusal texts: a 0.4
    request without valid sync params is "not a sync request" to the reference,
    answered ``400 Invalid path``. ``request`` is the Django request when there
    is one (else one is made of ``scope``); ``csrf`` as for ``check_site``.
    Host and Origin are checked first: a request for a host this server does not
    serve, or from a site it does not trust, learns nothing of the protocol.
    """
    try:
        store_id, payload = parse_search_params(query_string)
    except Refused as refused:
        store_id, bad_params = None, refused
    else:
        bad_params = None
    try:
        check_site(request if request is not None else request_of(scope), origin, csrf)
    except Refused as refused:
        refused.store_id = store_id
        raise
    if bad_params is not None:
        if generation == V04:
            raise Refused(400, "Invalid path", reason="path") from None
        raise bad_params
    logcontext.update(store_id=store_id)
    context = SyncContext.of(store_id, payload, generation, scope)
    try:
        await validate_payload(context, override)
        if not conf.get("CREATE_STORES") and not await db.run(storage.store_exists, store_id):
            raise Refused(404, f"Unknown store: {store_id}", reason="unknown_store")
    except Refused as refused:
        refused.store_id = store_id
        raise
    return context


def log_refused(refused, scope, generation):
    """Say once why a connection was refused: under daphne its client sees only 403."""
    logger.warning(
        "refused a %s %s request for store %r from %s: %s %s%s",
        generation,
        scope.get("type", "?") if scope else "?",
        refused.store_id,
        logcontext.client_address(scope) or "an unknown client",
        refused.status,
        refused.body.splitlines()[0] if refused.body else "",
        f" ({refused.detail})" if refused.detail else "",
    )
