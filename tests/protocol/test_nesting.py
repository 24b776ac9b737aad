"""livesync's nesting limit (issue 35): event args nest at most ``wire.MAX_ARGS_DEPTH`` levels, on every Python.

The limit used to be wherever Python's ``json`` and msgspec raise RecursionError: about 1,000 levels on 3.11,
10,000 on 3.13. Now the depth is read off the text before anything parses it, at every way in: 0.3 frames,
0.4 frames and HTTP bodies, ``syncapp.events.commit``, ``livesync_commit``, NDJSON and D1 imports. The same
9,000-deep array (an 18 kB frame) is refused by each with a message naming the limit and changes nothing; an
array exactly at the limit is accepted. What the admin shows of stored args is bounded whatever is stored.

Runs on SQLite + the in-memory layer and on PostgreSQL + Redis (``-m protocol``).
"""

import io
import json
import random
import sqlite3

import pytest
from django.core.management import CommandError, call_command
from django.test import Client as HttpClient
from django.urls import reverse

from syncapp import admin as store_admin
from syncapp import events, storage
from syncapp.models import Store
from syncapp.protocol import wire
from syncapp.storage import db, transfer
from syncapp.v03 import codec as codec03
from syncapp.v04 import codec as codec04
from tests.support.v03_client import event
from tests.support.v04_client import RpcClient, http_call, push_payload, request

pytestmark = pytest.mark.protocol

LIMIT = wire.MAX_ARGS_DEPTH
SAYS_THE_LIMIT = f"the nesting limit is {LIMIT} levels"


def nested(depth):
    """An array ``depth`` levels deep, as JSON text (json cannot write one this deep on every Python)."""
    return "[" * depth + "]" * depth


DEEP = nested(9_000)
AT_LIMIT = nested(LIMIT)
OVER_LIMIT = nested(LIMIT + 1)
PLACEHOLDER = '"args-go-here"'


def with_args(frame, args_text):
    """``frame`` as compact JSON with the args of its event(s) replaced by ``args_text``."""
    return json.dumps(frame, separators=(",", ":")).replace(PLACEHOLDER, args_text)


def one_event(seq_num=1):
    return [event(seq_num, args="args-go-here")]


def stored_args(store_id):
    return [stored.args for stored in storage.read_page(store_id, 0, 10).events]


# The measure


def reference_depth(text):
    """The depth of JSON text, walked a character at a time."""
    depth = highest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            highest = max(highest, depth)
        elif char in "]}":
            depth -= 1
    return highest


def test_depth_counts_arrays_and_objects_outside_strings():
    assert not wire.args_too_deep(AT_LIMIT) and wire.args_too_deep(OVER_LIMIT) and wire.args_too_deep(DEEP)
    assert not wire.args_too_deep('{"a":' * LIMIT + "1" + "}" * LIMIT)
    assert wire.args_too_deep('{"a":[' * 33 + "]}" * 33)
    assert not wire.args_too_deep(json.dumps({"text": "[" * 500, "quoted": '\\"[[' * 100, "more": "{]" * 99}))
    assert not wire.args_too_deep(json.dumps(["\\", "[" * 100, '"', "\\\\" + "{" * 100]))
    assert not wire.args_too_deep(b"[" * 10 + b"1" + b"]" * 10) and wire.args_too_deep(wire.Raw(OVER_LIMIT.encode()))
    assert not wire.args_too_deep('"' + "[" * 1000 + '"') and not wire.args_too_deep("")


def test_depth_agrees_with_a_character_by_character_walk():
    rng = random.Random(35)
    key_ends = ["", "[", "\\", '"', "{]"]

    def value(depth):
        if depth == 0 or rng.random() < 0.3:
            return rng.choice([1, None, "é[", '"]}', "\\[", "{\\", "x"])
        if rng.random() < 0.5:
            return [value(depth - 1) for _ in range(rng.randrange(4))]
        return {f"k{index}{rng.choice(key_ends)}": value(depth - 1) for index in range(3)}

    for _ in range(2_000):
        text = json.dumps(value(rng.randrange(12)), ensure_ascii=rng.random() < 0.5)
        depth = reference_depth(text)
        for limit in {0, 1, 5, max(depth - 1, 0), depth}:
            assert wire.nested_deeper(text, limit) == (depth > limit), (text, limit)
    # Deep chains with leaves beside them: peeled a level at a time, then walked run by run.
    for depth in (LIMIT - 1, LIMIT, LIMIT + 1, 200):
        text = "[[]," * (depth - 1) + "[]" + "]" * (depth - 1)
        assert wire.args_too_deep(text) == (depth > LIMIT), depth


# 0.3 frames


@pytest.mark.django_db(transaction=True)
async def test_0_3_push_over_the_limit_is_an_invalid_push_and_changes_nothing(connect, store_id):
    client = await connect()
    for args in (DEEP, OVER_LIMIT):
        frame = {"_tag": "WSMessage.PushReq", "requestId": "deep", "batch": one_event()}
        await client.send(with_args(frame, args))
        # The requestId comes before the batch: the client's push fails rather than wait for its ack.
        assert await client.recv() == {
            "_tag": "WSMessage.Error",
            "requestId": "deep",
            "message": f"Invalid message: JSON is nested too deeply: {wire.NESTING_LIMIT}",
        }
    await client.send('{"_tag":"WSMessage.Ping","requestId":"ping","x":' + DEEP + "}")
    answer = await client.recv()
    assert answer["requestId"] == "ping" and SAYS_THE_LIMIT in answer["message"]
    [chunk] = await client.pull_all("pull")
    assert chunk["batch"] == [], "a refused push changed the store"
    assert await db.run(storage.get_store, store_id) is None


@pytest.mark.django_db(transaction=True)
async def test_0_3_push_at_the_limit_is_stored_and_echoed_as_sent(connect, store_id):
    client = await connect()
    await client.send(with_args({"_tag": "WSMessage.PushReq", "requestId": "p", "batch": one_event()}, AT_LIMIT))
    assert await client.recv() == {"_tag": "WSMessage.PushAck", "requestId": "p"}
    echo = await client.recv_text()
    assert f'"args":{AT_LIMIT},' in echo
    assert await db.run(stored_args, store_id) == [AT_LIMIT]


def test_0_3_frames_nest_three_levels_around_the_args():
    # Anything else in a frame may nest as deeply as args do under a push's object, batch and event.
    ping = '{"_tag":"WSMessage.Ping","requestId":"ping","x":'
    assert type(codec03.decode(ping + nested(LIMIT + 2) + "}")) is codec03.Ping
    with pytest.raises(codec03.InvalidFrame, match=SAYS_THE_LIMIT):
        codec03.decode(ping + nested(LIMIT + 3) + "}")
    # A frame too deep whose requestId follows the deep part has none to answer with.
    with pytest.raises(codec03.InvalidFrame) as refused:
        codec03.decode('{"x":' + DEEP + ',"_tag":"WSMessage.Ping","requestId":"ping"}')
    assert refused.value.request_id is None
    assert codec03.peek_request_id('{"requestId":"big","batch":' + DEEP + "}") == "big"


# 0.4 frames and HTTP bodies


@pytest.mark.django_db(transaction=True)
async def test_0_4_push_over_the_limit_fails_that_request_and_changes_nothing(store_id):
    client = RpcClient(store_id)
    assert (await client.connect())[0]
    try:
        for request_id, args in (("1", DEEP), ("2", OVER_LIMIT)):
            await client.send(
                with_args(request(request_id, "SyncWsRpc.Push", push_payload(store_id, one_event())), args)
            )
            answer = await client.recv()
            assert answer["_tag"] == "Exit" and answer["requestId"] == request_id, answer
            assert answer["exit"]["cause"]["_tag"] == "Die"
            assert answer["exit"]["cause"]["defect"].endswith(f"└─ JSON is nested too deeply: {wire.NESTING_LIMIT}")
        # Not a request: nothing to fail but the connection, which stays open.
        await client.send('{"_tag":"Ping","x":' + DEEP + "}")
        assert await client.recv() == {
            "_tag": "Defect",
            "defect": {"name": "SyntaxError", "message": f"JSON is nested too deeply: {wire.NESTING_LIMIT}"},
        }
        await client.send('{"_tag":"Ping"}')
        assert await client.recv() == {"_tag": "Pong"}
    finally:
        await client.close()
    assert await db.run(storage.get_store, store_id) is None


@pytest.mark.django_db(transaction=True)
async def test_0_4_push_at_the_limit_is_stored(store_id):
    client = RpcClient(store_id)
    assert (await client.connect())[0]
    try:
        await client.send(with_args(request("1", "SyncWsRpc.Push", push_payload(store_id, one_event())), AT_LIMIT))
        assert await client.recv() == {"_tag": "Exit", "requestId": "1", "exit": {"_tag": "Success", "value": {}}}
    finally:
        await client.close()
    assert await db.run(stored_args, store_id) == [AT_LIMIT]


@pytest.mark.django_db(transaction=True)
async def test_0_4_http_push_over_the_limit_dies_and_at_the_limit_is_stored(store_id):
    body = with_args(request("7", "SyncHttpRpc.Push", push_payload(store_id, one_event())), DEEP).encode()
    status, _, reply = await http_call(body, store_id)
    [answer] = json.loads(reply)
    assert status == 200 and answer["requestId"] == "7" and answer["exit"]["cause"]["_tag"] == "Die"
    assert SAYS_THE_LIMIT in answer["exit"]["cause"]["defect"]
    assert await db.run(storage.get_store, store_id) is None

    body = with_args(request("8", "SyncHttpRpc.Push", push_payload(store_id, one_event())), AT_LIMIT).encode()
    _, _, reply = await http_call(body, store_id)
    assert json.loads(reply) == [{"_tag": "Exit", "requestId": "8", "exit": {"_tag": "Success", "value": {}}}]
    assert await db.run(stored_args, store_id) == [AT_LIMIT]


def test_0_4_messages_nest_four_levels_around_the_args():
    ping = '{"_tag":"Ping","x":'
    assert type(codec04.decode(ping + nested(LIMIT + 3) + "}")) is codec04.Ping
    with pytest.raises(codec04.InvalidRpcMessage, match=SAYS_THE_LIMIT):
        codec04.decode(ping + nested(LIMIT + 4) + "}")


# Python code, the shell, imports


def python_nested(depth):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.django_db(transaction=True)
def test_commit_refuses_args_over_the_limit_and_stores_args_at_it(store_id):
    for depth in (9_000, LIMIT + 1):
        with pytest.raises(events.CommitRefused, match=f"args nest too deeply: {SAYS_THE_LIMIT}"):
            events.commit(store_id, [("v1.Deep", python_nested(depth))])
    assert storage.get_store(store_id) is None
    assert events.commit(store_id, [("v1.Deep", python_nested(LIMIT))]) == [1]
    assert stored_args(store_id) == [AT_LIMIT]


@pytest.mark.django_db(transaction=True)
def test_livesync_commit_refuses_args_over_the_limit(store_id):
    with pytest.raises(CommandError, match=f"ARGS nests too deeply: {SAYS_THE_LIMIT}"):
        call_command("livesync_commit", store_id, "v1.Deep", DEEP, stdout=io.StringIO())
    assert storage.get_store(store_id) is None
    call_command("livesync_commit", store_id, "v1.Deep", AT_LIMIT, stdout=io.StringIO())
    assert stored_args(store_id) == [AT_LIMIT]


def ndjson_line(seq_num, args_text):
    line = {**event(seq_num, args="args-go-here"), "createdAt": "2025-06-01T12:00:00.000Z"}
    return with_args(line, args_text)


@pytest.mark.django_db(transaction=True)
def test_ndjson_import_refuses_a_line_over_the_limit_and_imports_nothing(store_id, tmp_path):
    path = tmp_path / "log.ndjson"
    path.write_text(f"{ndjson_line(1, AT_LIMIT)}\n{ndjson_line(2, DEEP)}\n")
    with pytest.raises(CommandError, match=f"line 2: JSON is nested too deeply: {SAYS_THE_LIMIT}.*nothing imported"):
        call_command("livesync_import", store_id, str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert storage.get_store(store_id) is None

    path.write_text(f"{ndjson_line(1, AT_LIMIT)}\n")
    call_command("livesync_import", store_id, str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert stored_args(store_id) == [AT_LIMIT]


def d1_file(path, table, rows):
    """A D1 database holding ``rows`` of ``(seqNum, args text)`` in an eventlog table."""
    from tests.storage.test_d1_import import REFERENCE_COLUMNS

    database = sqlite3.connect(path)
    database.execute(f"CREATE TABLE {table} ({REFERENCE_COLUMNS}) strict")
    database.executemany(
        f"INSERT INTO {table} (seqNum, parentSeqNum, name, args, createdAt, clientId, sessionId) "
        "VALUES (?, ?, 'v1.Deep', ?, '2025-05-01T10:00:00.000Z', 'c', 's')",
        [(seq_num, seq_num - 1, args) for seq_num, args in rows],
    )
    database.commit()
    database.close()
    return str(path)


@pytest.mark.django_db(transaction=True)
def test_d1_import_refuses_a_table_with_args_over_the_limit(store_id, tmp_path):
    table = f"eventlog_7_{store_id.replace('-', '_')}"
    path = d1_file(tmp_path / "deep.sqlite", table, [(1, AT_LIMIT), (2, DEEP)])
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"Not imported .*{table}"):
        call_command("livesync_import_d1", path, "--store", f"{table}={store_id}", stdout=out)
    assert f"row 2 (seqNum 2): args: JSON is nested too deeply: {SAYS_THE_LIMIT}" in out.getvalue()
    assert storage.get_store(store_id) is None

    path = d1_file(tmp_path / "at-limit.sqlite", table, [(1, AT_LIMIT)])
    call_command("livesync_import_d1", path, "--store", f"{table}={store_id}", stdout=io.StringIO())
    assert stored_args(store_id) == [AT_LIMIT]


def test_transfer_names_the_line_before_msgspec_reads_it():
    with pytest.raises(transfer.TransferError, match=f"line 1: JSON is nested too deeply: {SAYS_THE_LIMIT}"):
        list(transfer.parse_ndjson([ndjson_line(1, DEEP).encode()]))


# The admin


def store_page(user, store_id):
    client = HttpClient()
    client.force_login(user)
    response = client.get(reverse("admin:syncapp_store_change", args=[Store.objects.get(store_id=store_id).pk]))
    assert response.status_code == 200
    return response.content.decode()


def append_args(store_id, args_texts):
    """Events with these args, written straight to storage as if an older server had accepted them."""
    head = storage.head(store_id) if storage.get_store(store_id) else 0
    first = head + 1
    batch = [
        wire.Event(
            name="v1.Stored", args=wire.Raw(text.encode()), seqNum=n, parentSeqNum=n - 1, clientId="c", sessionId="s"
        )
        for n, text in enumerate(args_texts, start=first)
    ]
    storage.append(store_id, batch, wire.args_text)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.mark.django_db(transaction=True)
def test_admin_page_of_a_store_holding_deep_args_stays_small(superuser, store_id):
    append_args(store_id, ['{"id":"t1"}'])
    baseline = len(store_page(superuser, store_id))
    append_args(store_id, [DEEP])
    html = store_page(superuser, store_id)
    # The 18 kB array shows as stored, cut; indented (as on 3.13 before), it grew with the square of its depth.
    assert len(html) < baseline + store_admin.ARGS_SHOWN_CHARS + 1_000
    assert f"<pre>{DEEP[: store_admin.ARGS_SHOWN_CHARS]}</pre>" in html
    assert "As stored (over 2,000 characters); the first 4,000 of 18,000 characters: the store&#x27;s export" in html

    append_args(store_id, [OVER_LIMIT])
    html = store_page(superuser, store_id)
    assert f"<pre>{OVER_LIMIT}</pre>" in html
    assert f"As stored: nested more than {LIMIT} levels deep (the nesting limit)." in html


@pytest.mark.django_db(transaction=True)
def test_admin_page_size_is_bounded_whatever_is_stored(superuser, store_id):
    # A page of 50 events whose args would each indent to a megabyte or more: deep, or at the limit but
    # holding many values (each on a line indented 128 spaces), or long.
    at_limit_and_wide = "[" * LIMIT + ",".join(["0"] * 900) + "]" * LIMIT
    long_text = json.dumps({"text": "x" * 50_000})
    append_args(store_id, [nested(1_000)] * 20 + [at_limit_and_wide] * 20 + [long_text] * 10)
    html = store_page(superuser, store_id)
    assert len(html) < 50 * (store_admin.ARGS_SHOWN_CHARS + 300) + 20_000
    assert html.count("the store&#x27;s export has them all") == 30  # the 1,000-deep arrays are 2,000 characters
