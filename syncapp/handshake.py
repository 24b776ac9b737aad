"""The connection request: ``storeId`` and ``payload`` search params, origin and payload checks.

Shared by the WebSocket consumer (before the upgrade) and the plain-HTTP view
of ``…/websocket`` (which answers 426 once the request would have been valid),
so both refuse a request with the same status and text.
"""

import json
import logging
from urllib.parse import parse_qs, unquote

from . import conf, db, logcontext, storage
from .context import READ_ONLY, SyncContext
from .generations import V03, V04

logger = logging.getLogger("syncapp")


class Refused(Exception):
    """The request is refused before the upgrade with an HTTP ``status`` and text body.

    ``reason`` names the check that refused it, for the metrics: one of
    ``search_params``, ``path``, ``origin``, ``payload``, ``unknown_store``.
    """

    def __init__(self, status, body, store_id=None, reason="search_params"):
        super().__init__(body)
        self.status = status
        self.body = body
        self.store_id = store_id
        self.reason = reason


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


def origin_allowed(origin):
    """Whether the request's Origin header (None when absent) is allowed; clients without one always are."""
    allowed = conf.get("ALLOWED_ORIGINS")
    return allowed is None or origin is None or origin in allowed


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


async def check(query_string, origin, scope, override=None, generation=V03):
    """The ``SyncContext`` of an acceptable connection request, or raise Refused.

    ``scope`` is the request's ASGI scope, handed to the validator (None when the
    request did not come through ASGI, as under Django's test client).
    ``generation`` ("0.3" or "0.4") picks the reference's refusal texts: a 0.4
    request without valid sync params is "not a sync request" to the reference,
    answered ``400 Invalid path``.
    """
    try:
        store_id, payload = parse_search_params(query_string)
    except Refused:
        if generation == V04:
            raise Refused(400, "Invalid path", reason="path") from None
        raise
    logcontext.update(store_id=store_id)
    context = SyncContext.of(store_id, payload, generation, scope)
    try:
        if not origin_allowed(origin):
            raise Refused(403, "Origin not allowed", reason="origin")
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
        "refused a %s %s request for store %r from %s: %s %s",
        generation,
        scope.get("type", "?") if scope else "?",
        refused.store_id,
        logcontext.client_address(scope) or "an unknown client",
        refused.status,
        refused.body.splitlines()[0] if refused.body else "",
    )
