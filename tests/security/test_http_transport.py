"""Issue 36, the 0.4 HTTP transport: CSRF for requests the session cookie authenticates, bodies refused before
they are read, and a client's malformed request logged as the client's mistake.

``TransportRouter`` sends 0.4 requests around Django, so neither ``CsrfViewMiddleware`` nor Django's request
logging sees them: the endpoint applies the middleware's origin rule itself (Origin, then Referer over HTTPS).
"""

import json
import urllib.error
import urllib.request
import uuid

import pytest
from channels.testing import ApplicationCommunicator
from django.test import override_settings

from syncapp.routing import TransportRouter
from tests.security.test_origins import EVIL, http_push, own_origin, pushed, start_session_server
from tests.support.metrics import metric
from tests.support.v03_client import events
from tests.support.v04_client import push_payload, query, request

pytestmark = [pytest.mark.security]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server, cookie = start_session_server(tmp_path_factory.mktemp("http-transport"))
    try:
        yield server, cookie
    finally:
        server.stop()


def test_a_cross_site_text_plain_post_with_the_session_cookie_is_refused_and_writes_nothing(served):
    """What a form on another site can send without a CORS preflight, with the browser adding the cookie."""
    server, cookie = served
    store_id = f"csrf-{uuid.uuid4().hex[:8]}"
    before = metric(server.http_url, "livesync_handshakes_total", generation="0.4", transport="http", outcome="origin")
    assert http_push(server, store_id, 1, {"Cookie": cookie, "Origin": EVIL}) == (403, "Origin not allowed")
    assert http_push(server, store_id, 1, {"Cookie": cookie, "Origin": "null"}) == (403, "Origin not allowed")
    after = metric(server.http_url, "livesync_handshakes_total", generation="0.4", transport="http", outcome="origin")
    assert after - before == 2
    # Nothing was written: the page's own site then pushes seqNum 1, and so does a client without an Origin.
    assert pushed(http_push(server, store_id, 1, {"Cookie": cookie, "Origin": own_origin(server)}))
    assert pushed(http_push(server, store_id, 2, {"Cookie": cookie}, content_type="application/json"))
    log = server.log_path.read_text(errors="replace")
    assert f"refused a 0.4 http request for store '{store_id}'" in log and f"Origin '{EVIL}'" in log


def test_a_websocket_path_without_a_store_id_is_a_clients_mistake_in_the_log(served):
    """The reference's 500 stays, but Django must not log it as ``ERROR Internal Server Error``."""
    server, _ = served
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"{server.http_url}/sync/websocket", timeout=10)
    assert answer.value.code == 500
    assert answer.value.read().decode().startswith("Invalid search params: ")
    log = server.log_path.read_text(errors="replace")
    assert "Internal Server Error" not in log
    assert "WARNING  syncapp refused a 0.3 http request for store None" in log
    assert "500 Invalid search params" in log


# In process: the order of the checks and the body's limit, which daphne (it receives a whole request before
# handing it over) cannot show; a server that streams bodies, as uvicorn does, reads no more than this.


def http_scope(store_id, headers=(), scheme="http", method="POST"):
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": "/",
        "raw_path": b"/",
        "query_string": query(store_id, transport="http").encode(),
        "headers": [(name.encode(), value.encode()) for name, value in headers],
        "server": ("sync.example", 443 if scheme == "https" else 80),
    }


async def answer_without_the_rest(scope, *chunks):
    """Send ``chunks`` of the body, more to come after each, and return the answer ``(status, text)`` the
    endpoint gives without waiting for the rest."""
    communicator = ApplicationCommunicator(TransportRouter(None), scope)
    for chunk in chunks:
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": True})
    start = await communicator.receive_output(5)
    body = await communicator.receive_output(5)
    await communicator.wait(5)
    return start["status"], body["body"].decode()


async def answer(scope, body):
    communicator = ApplicationCommunicator(TransportRouter(None), scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(5)
    chunks = []
    while True:
        message = await communicator.receive_output(5)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return start["status"], b"".join(chunks).decode()


def push_body(store_id, seq_num=1):
    return json.dumps(request("1", "SyncHttpRpc.Push", push_payload(store_id, events(seq_num, seq_num)))).encode()


@pytest.mark.django_db(transaction=True)
@override_settings(LIVESYNC={"MAX_MESSAGE_BYTES": 10_000})
async def test_an_oversized_content_length_is_refused_before_the_body_is_read(store_id):
    declared = [("content-type", "application/json"), ("content-length", "200000000")]
    assert await answer_without_the_rest(http_scope(store_id, declared)) == (
        413,
        "Request too large: more than 10000 bytes",
    )


@pytest.mark.django_db(transaction=True)
@override_settings(
    ALLOWED_HOSTS=["sync.example"],
    LIVESYNC={"MAX_MESSAGE_BYTES": 10_000, "VALIDATE_PAYLOAD": "tests.support.hooks.reject_all"},
)
async def test_a_request_is_authorised_before_its_body_is_read(store_id):
    declared = [("content-type", "application/json"), ("content-length", "200000000")]
    status, text = await answer_without_the_rest(http_scope(store_id, declared))
    assert status == 400 and f"no entry to {store_id}" in text
    status, text = await answer_without_the_rest(http_scope(store_id, [("host", "evil.example")]))
    assert (status, text) == (400, "Host not allowed")


@pytest.mark.django_db(transaction=True)
@override_settings(LIVESYNC={"MAX_MESSAGE_BYTES": 10_000})
async def test_a_body_that_grows_past_the_limit_is_cut_off_with_413(store_id):
    chunked = http_scope(store_id, [("content-type", "application/json")])
    assert await answer_without_the_rest(chunked, b"x" * 6_000, b"x" * 6_000) == (
        413,
        "Request too large: more than 10000 bytes",
    )
    # A body within the limit, in chunks, is read whole.
    body = push_body(store_id)
    status, text = await answer(chunked, body)
    assert status == 200 and json.loads(text)[0]["exit"]["_tag"] == "Success"


@pytest.mark.django_db(transaction=True)
@override_settings(ALLOWED_HOSTS=["sync.example"], CSRF_TRUSTED_ORIGINS=["https://app.example"])
async def test_over_https_a_request_with_the_session_cookie_and_no_origin_needs_a_good_referer(store_id):
    """``CsrfViewMiddleware``'s Referer check; requests without the session cookie (tokens) are not concerned."""
    cookie = ("cookie", "sessionid=whatever")

    async def status(*headers, scheme="https"):
        return (await answer(http_scope(store_id, [("host", "sync.example"), *headers], scheme), push_body(store_id)))[
            0
        ]

    assert await status(cookie) == 403
    assert await status(cookie, ("referer", "https://evil.example/page")) == 403
    assert await status(cookie, ("referer", "http://sync.example/page")) == 403
    assert await status(cookie, ("referer", "not a url")) == 403
    # A good Referer, the site's own or a trusted origin's: accepted, and the push goes on (its own answer).
    assert await status(cookie, ("referer", "https://sync.example/page")) == 200
    assert await status(cookie, ("referer", "https://app.example/page")) == 200
    # No session cookie: a token client, unaffected.
    assert await status() == 200
    # Over plain HTTP the middleware checks no Referer either (it relies on its token, which sync clients lack).
    assert await status(cookie, scheme="http") == 200
