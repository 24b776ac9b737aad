"""Django code as a participant in a store: ``syncapp.events.commit``, ``events_committed``, ``livesync_tail``.

Runs on both backends (``-m protocol``). Real LiveStore clients receiving
server commits are in ``tests/interop/``; the demo's server-side view in
``tests/browser/test_todomvc.py``.
"""

import asyncio
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from syncapp import events, storage
from syncapp.signals import events_committed
from syncapp.storage import db
from tests.support.v03_client import events as client_events
from tests.support.v03_client import seq_nums
from tests.support.v04_client import RpcClient
from tests.support.v04_client import seq_nums as v04_seq_nums

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

CREATED = ("v1.TodoCreated", {"id": "t1", "text": "From the server", "createdAt": "2026-12-04T10:00:00.000Z"})


@pytest.fixture
def received():
    """What ``events_committed`` receivers were sent: ``(store_id, [seqNum, …], origin)`` per batch."""
    batches = []

    def receiver(sender, store_id, events, origin, **kwargs):
        batches.append((store_id, [event.seq_num for event in events], origin))

    events_committed.connect(receiver)
    yield batches
    events_committed.disconnect(receiver)


def head_seen_elsewhere(store_id):
    """The store's head as another connection (another thread) reads it: committed state only."""
    with ThreadPoolExecutor(1) as other:
        return other.submit(lambda: _close_after(storage.head, store_id)).result()


def _close_after(function, *args):
    try:
        return function(*args)
    finally:
        connection.close()


def test_a_commit_appends_at_the_head_after_client_events(store_id, received):
    storage.append(store_id, [storage_event(1, client_id="browser")], storage_args)
    assert events.commit(store_id, [CREATED, ("v1.TodoCompleted", {"id": "t1"})]) == [2, 3]

    stored = storage.read_page(store_id, 0, 10).events
    assert [(e.seq_num, e.parent_seq_num, e.client_id) for e in stored] == [
        (1, 0, "browser"),
        (2, 1, events.SERVER_CLIENT_ID),
        (3, 2, events.SERVER_CLIENT_ID),
    ]
    assert json.loads(stored[1].args) == CREATED[1]
    assert received == [(store_id, [2, 3], "python")]


def storage_event(seq_num, client_id="c"):
    from syncapp.protocol import wire

    return wire.Event(name="v1.E", seqNum=seq_num, parentSeqNum=seq_num - 1, clientId=client_id, sessionId="s")


def storage_args(event):
    return None


@pytest.mark.parametrize(
    ("batch", "problem"),
    [
        ([], "no events"),
        ([("", {})], "no usable name"),
        ([("v1.E", {"at": object()})], "not JSON"),
        ([("v1.E", {"x": float("nan")})], "not JSON"),
        (["v1.E"], r"not a \(name, args\) pair"),
        ([("v1.E", {"text": "x" * 1_000_001})], "more than MAX_MESSAGE_BYTES"),
    ],
)
def test_unusable_events_are_refused_and_write_nothing(store_id, batch, problem):
    with pytest.raises(events.CommitRefused, match=problem):
        events.commit(store_id, batch)
    assert storage.get_store(store_id) is None


def test_dates_are_encoded_as_the_client_schema_expects():
    from datetime import datetime, timedelta, timezone

    moment = datetime(2026, 12, 4, 11, 30, 5, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert events.js_date(moment) == "2026-12-04T10:30:05.123Z"
    with pytest.raises(events.CommitRefused):
        events.js_date(datetime(2026, 12, 4))


async def test_sockets_of_both_generations_receive_a_commit_as_a_push(connect, store_id):
    v03 = await connect()
    await v03.pull_all("first-pull")
    v04 = RpcClient(store_id)
    assert (await v04.connect())[0]
    try:
        await v04.pull("live", live=True)
        await v04.recv()
        assert await sync_to_async(events.commit)(store_id, [CREATED]) == [1]

        pushed = await v03.recv()
        assert pushed["_tag"] == "WSMessage.PullRes" and pushed["requestId"]["context"] == "push"
        assert seq_nums(pushed) == [1]
        assert pushed["batch"][0]["eventEncoded"]["args"] == CREATED[1]
        live = await v04.recv()
        assert live["requestId"] == "live" and v04_seq_nums(live) == [1]
    finally:
        await v04.close()


async def test_in_a_transaction_the_commit_is_announced_only_once_it_commits(connect, store_id, received):
    reader = await connect()
    await reader.pull_all("first-pull")
    inside, release = threading.Event(), threading.Event()
    seen_inside = []

    def in_transaction():
        with transaction.atomic():
            events.commit(store_id, [CREATED])
            seen_inside.append(head_seen_elsewhere(store_id))
            inside.set()
            release.wait(10)

    finished = asyncio.ensure_future(sync_to_async(_close_after, thread_sensitive=False)(in_transaction))
    await asyncio.get_running_loop().run_in_executor(None, inside.wait, 10)
    assert await reader.nothing(timeout=0.5)
    assert seen_inside == [0] and received == []
    release.set()
    await finished

    assert seq_nums(await reader.recv()) == [1]
    assert received == [(store_id, [1], "python")]


async def test_a_rolled_back_transaction_stores_and_announces_nothing(connect, store_id, received):
    reader = await connect()

    def rolled_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            events.commit(store_id, [CREATED])
            raise RuntimeError("the caller's own work failed")

    await sync_to_async(_close_after, thread_sensitive=False)(rolled_back)
    assert await reader.nothing(timeout=0.5)
    assert await db.run(storage.head, store_id) == 0 and received == []


async def test_a_client_push_and_an_import_are_each_sent_to_receivers_once(connect, store_id, received, tmp_path):
    client = await connect()
    await client.push("push-1", client_events(1, 2))
    assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    await client.recv()
    # Receivers run after the pusher got its answer and echo.
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.02)
    log = tmp_path / "log.ndjson"
    log.write_text(
        "".join(json.dumps({**event, "createdAt": "2026-01-01T00:00:00.000Z"}) + "\n" for event in client_events(1, 3))
    )
    await sync_to_async(call_command)("livesync_import", f"{store_id}-copy", str(log), stdout=io.StringIO())

    assert received == [(store_id, [1, 2], "0.3"), (f"{store_id}-copy", [1, 2, 3], "import")]


async def test_a_push_over_0_4_http_is_sent_to_receivers_once(store_id, received):
    from tests.support.v04_client import events as v04_events
    from tests.support.v04_client import http_call, push_payload, request

    body = request("1", "SyncHttpRpc.Push", push_payload(store_id, v04_events(1, 3)))
    status, _, answer = await http_call(body, store_id)
    assert status == 200 and json.loads(answer)[0]["exit"]["_tag"] == "Success"
    assert received == [(store_id, [1, 2, 3], "0.4")]


async def test_a_raising_receiver_is_logged_and_the_client_is_answered_as_usual(connect, store_id, caplog):
    def broken(sender, **kwargs):
        raise ValueError("the receiver's own bug")

    events_committed.connect(broken)
    try:
        client = await connect()
        await client.push("push-1", client_events(1, 1))
        assert (await client.recv())["_tag"] == "WSMessage.PushAck"
        assert seq_nums(await client.recv()) == [1]
        await client.push("push-2", client_events(2, 2))
        assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    finally:
        events_committed.disconnect(broken)
    assert "events_committed receiver" in caplog.text and "the receiver's own bug" in caplog.text


async def test_a_raising_receiver_is_logged_once_with_one_traceback(connect, store_id, caplog):
    """One record per failure, on ``syncapp`` with the store, for a client's push (``asend_robust``) and a
    server commit (``send_robust``): Django's own record of it on ``django.dispatch`` doubled every failure."""

    def broken(sender, **kwargs):
        raise ValueError("the receiver's own bug")

    def failures():
        return [record for record in caplog.records if record.exc_info]

    events_committed.connect(broken)
    try:
        client = await connect()
        await client.push("push-1", client_events(1, 1))
        assert (await client.recv())["_tag"] == "WSMessage.PushAck"
        # Receivers run after the pusher got its answer and echo.
        for _ in range(100):
            if failures():
                break
            await asyncio.sleep(0.02)
        await sync_to_async(events.commit)(store_id, [CREATED])
    finally:
        events_committed.disconnect(broken)
    assert [(record.name, record.getMessage().endswith(f"failed for store {store_id!r}")) for record in failures()] == [
        ("syncapp", True),
        ("syncapp", True),
    ]
    assert caplog.text.count("ValueError: the receiver's own bug") == 2


def run(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(*args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_livesync_commit_commits_one_event_with_the_same_checks(store_id):
    out, _ = run("livesync_commit", store_id, "v1.TodoCompleted", '{"id": "t1"}')
    assert "as e1" in out
    assert json.loads(storage.read_page(store_id, 0, 10).events[0].args) == {"id": "t1"}
    with pytest.raises(CommandError, match="not JSON"):
        run("livesync_commit", store_id, "v1.TodoCompleted", "{id: t1}")
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(CommandError, match="nests too deeply"):
        run("livesync_commit", store_id, "v1.TodoCompleted", deep)
    with pytest.raises(CommandError, match="printable"):
        run("livesync_commit", "bad\nid", "v1.TodoCompleted", "{}")
    assert storage.head(store_id) == 1


def tailed(out):
    return [(line["storeId"], line["seqNum"]) for line in map(json.loads, out.splitlines())]


def test_the_tail_resumes_from_its_cursor_and_starts_a_reset_store_again(store_id):
    first, second = f"{store_id}-a", f"{store_id}-b"
    events.commit(first, [CREATED, CREATED])
    events.commit(second, [CREATED])

    out, err = run("livesync_tail", "reporting", first, second, "--once")
    assert sorted(tailed(out)) == [(first, 1), (first, 2), (second, 1)]
    assert "Tailed 3 events" in err
    assert run("livesync_tail", "reporting", first, second, "--once")[0] == ""

    events.commit(first, [CREATED])
    assert tailed(run("livesync_tail", "reporting", "--once")[0]) == [(first, 3)]
    assert sorted(tailed(run("livesync_tail", "another", first, second, "--once")[0])) == [
        (first, 1),
        (first, 2),
        (first, 3),
        (second, 1),
    ]

    storage.reset(first)
    events.commit(first, [CREATED])
    assert tailed(run("livesync_tail", "reporting", first, "--once")[0]) == [(first, 1)]


def test_read_walks_a_log_after_a_cursor_in_pages(store_id, monkeypatch):
    monkeypatch.setattr(events, "READ_EVENTS", 3)
    events.commit(store_id, [CREATED] * 8)
    assert [event.seq_num for event in events.read(store_id, after=2)] == [3, 4, 5, 6, 7, 8]
    assert list(events.read(f"{store_id}-unknown")) == []


def test_the_django_code_pages_examples_do_what_it_says(store_id):
    from syncapp.management import tail
    from tests.support.docs_examples import run_python_blocks

    examples = run_python_blocks("howto/django-code.md")
    try:
        assert examples["add_todo_from_the_server"](store_id, "t1", "Call the plumber") == [1]
        events.commit(store_id, [("v1.TodoAssigned", {"id": "t1", "to": "sam"})])
        assert examples["assigned"] == [(store_id, 2)]
    finally:
        events_committed.disconnect(examples["notice_assignments"])
    stored = storage.read_page(store_id, 0, 10).events[0]
    assert json.loads(stored.args)["text"] == "Call the plumber" and stored.args.endswith('Z"}')

    follower = tail.Tail("readme", examples["project"], [store_id])
    assert follower.round() == 2 and examples["todo_counts"] == {store_id: 1}


DOCS_DATABASES = ["default", "stores_b"]


@pytest.mark.django_db(transaction=True, databases=DOCS_DATABASES)
@pytest.mark.parametrize("alias", DOCS_DATABASES)
def test_the_django_code_pages_atomic_examples_hold_wherever_the_store_lives(settings, received, store_id, alias):
    """``events.atomic`` as the page's examples use it, for stores on the default database and on another:
    the events commit with the block, and a block that raises stores, sends and creates nothing."""
    import itertools

    from syncapp.storage import placement
    from tests.support.docs_examples import run_python_blocks

    settings.LIVESYNC = {**settings.LIVESYNC, "STORE_DATABASES": DOCS_DATABASES}
    candidates = (f"{store_id}-{number}" for number in itertools.count())
    added, imported, abandoned = itertools.islice((each for each in candidates if placement.home(each) == alias), 3)
    examples = {
        **run_python_blocks("howto/django-code.md", "Commit events from Python"),
        **run_python_blocks("howto/django-code.md", "Commit events atomically"),
    }

    assert examples["add_todo_from_the_server"](added, "t1", "Call the plumber") == [1]
    examples["import_todos"](imported, ["Buy milk", "Call the plumber"])
    with pytest.raises(ValueError, match="todo 1 has no text"):
        examples["import_todos"](abandoned, ["Walk the dog", " "])

    assert [storage.head(each) for each in (added, imported, abandoned)] == [1, 2, 0]
    assert {storage.database_of(each) for each in (added, imported)} == {alias}
    assert storage.get_store(abandoned) is None
    assert received == [(added, [1], "python"), (imported, [1], "python"), (imported, [2], "python")]
    texts = [json.loads(event.args)["text"] for event in events.read(imported)]
    assert texts == ["Buy milk", "Call the plumber"]


def test_args_nested_too_deeply_to_encode_are_refused(store_id):
    nested = []
    for _ in range(5_000):
        nested = [nested]
    with pytest.raises(events.CommitRefused, match="nest too deeply"):
        events.commit(store_id, [("v1.E", nested)])
    assert storage.get_store(store_id) is None


def test_a_nul_in_a_name_or_a_client_id_is_refused_as_in_a_client_push(store_id):
    with pytest.raises(events.CommitRefused, match="NUL"):
        events.commit(store_id, [("v1.\x00E", {})])
    with pytest.raises(events.CommitRefused, match="NUL"):
        events.commit(store_id, [CREATED], client_id="server\x00")
    assert storage.get_store(store_id) is None
