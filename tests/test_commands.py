"""The livesync_* management commands: listing, NDJSON export and import, reset.

These run on both backends (``-m protocol``): an import writes through the same
transaction and chain check as a push, and a reset reaches sockets through the
channel layer.
"""

import io
import json
import sys

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from syncapp import storage
from syncapp.management import progress
from syncapp.models import Store
from syncapp.protocol import wire
from tests.support.v03_client import event

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

WIRE_KEYS = ["name", "args", "seqNum", "parentSeqNum", "clientId", "sessionId", "createdAt"]


def push(store_id, first, last, client_id="client-a", name="v1.TodoCreated", created_at=None):
    """Append events ``first``..``last`` the way a push does (one createdAt for the batch)."""
    batch = [
        wire.Event(
            name=name,
            args=wire.Raw(json.dumps({"id": f"todo-{n}", "text": f"todo {n}"}, separators=(",", ":")).encode()),
            seqNum=n,
            parentSeqNum=n - 1,
            clientId=client_id,
            sessionId="session-1",
        )
        for n in range(first, last + 1)
    ]
    storage.append(store_id, batch, lambda event: bytes(event.args).decode(), created_at=created_at)


def seed(store_id):
    """A log of 7 events from three pushes at three times, the last one without args."""
    push(store_id, 1, 3, created_at="2025-06-01T08:00:00.000Z")
    push(store_id, 4, 6, client_id="client-b", name="v1.TodoCompleted", created_at="2025-06-01T08:00:01.500Z")
    storage.append(
        store_id,
        [wire.Event(name="v1.AllCleared", seqNum=7, parentSeqNum=6, clientId="client-a", sessionId="session-2")],
        lambda event: None,
    )


def all_events(store_id):
    return storage.read_page(store_id, 0, 10_000).events


def run(*args, **kwargs):
    """``call_command`` with its stdout and stderr captured; returns (stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(*args, stdout=stdout, stderr=stderr, **kwargs)
    return stdout.getvalue(), stderr.getvalue()


def ndjson_line(n, parent=None, **overrides):
    line = {
        "name": "v1.TodoCreated",
        "args": {"id": f"todo-{n}"},
        "seqNum": n,
        "parentSeqNum": n - 1 if parent is None else parent,
        "clientId": "c",
        "sessionId": "s",
        "createdAt": "2025-06-01T12:00:00.000Z",
        **overrides,
    }
    return json.dumps(line)


def test_stores_lists_each_store_with_its_event_count(store_id):
    seed(store_id)
    push(f"{store_id}-other", 1, 2)
    out, _ = run("livesync_stores")
    lines = out.splitlines()
    assert lines[0].split() == ["storeId", "events", "last", "write", "table"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows[store_id][1] == "7"
    assert rows[f"{store_id}-other"][1] == "2"
    assert rows[store_id][-1] == Store.objects.get(store_id=store_id).table_name
    # most recently written first
    assert [line.split()[0] for line in lines[1:3]] == [f"{store_id}-other", store_id]
    assert lines[-1].endswith("events")


def test_export_import_round_trip_into_a_new_store_keeps_every_event_identical(store_id, tmp_path):
    seed(store_id)
    exported = tmp_path / "log.ndjson"
    _, err = run("livesync_export", store_id, "-o", str(exported))
    assert f"Exported 7 events of store '{store_id}' to {exported}" in err

    lines = exported.read_text().splitlines()
    assert len(lines) == 7
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    assert list(first) == WIRE_KEYS
    assert first["args"] == {"id": "todo-1", "text": "todo 1"}
    assert last["args"] is None

    copy = f"{store_id}-copy"
    out, _ = run("livesync_import", copy, str(exported))
    assert f"Imported 7 events into store '{copy}' (head e7)." in out
    # Every column, createdAt included (the original push times, not the import's).
    assert all_events(copy) == all_events(store_id)
    assert storage.head(copy) == 7


def test_export_to_stdout_is_the_same_ndjson_with_progress_on_stderr(store_id, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 3)
    monkeypatch.setattr("syncapp.storage.transfer.EXPORT_PAGE_SIZE", 2)
    seed(store_id)
    out, err = run("livesync_export", store_id)
    run("livesync_export", store_id, "-o", str(tmp_path / "file.ndjson"))
    assert out == (tmp_path / "file.ndjson").read_text()
    assert [json.loads(line)["seqNum"] for line in out.splitlines()] == [1, 2, 3, 4, 5, 6, 7]
    assert "exported 4 events…" in err and "exported 6 events…" in err


def test_import_shows_progress(store_id, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 4)
    monkeypatch.setattr("syncapp.storage.transfer.IMPORT_CHUNK_SIZE", 2)
    path = tmp_path / "log.ndjson"
    path.write_text("\n".join(ndjson_line(n) for n in range(1, 10)) + "\n")
    out, _ = run("livesync_import", store_id, str(path))
    assert "imported 4 events…" in out and "imported 8 events…" in out
    assert storage.head(store_id) == 9


def test_import_from_standard_input(store_id, monkeypatch):
    data = "\n".join(ndjson_line(n) for n in range(1, 4)) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    run("livesync_import", store_id, "-")
    assert [event.seq_num for event in all_events(store_id)] == [1, 2, 3]
    assert all_events(store_id)[0].created_at == "2025-06-01T12:00:00.000Z"


def test_import_compacts_args_as_a_push_does(store_id, tmp_path):
    path = tmp_path / "log.ndjson"
    path.write_text(ndjson_line(1).replace('{"id": "todo-1"}', '{ "id" : [1, 2] }') + "\n")
    run("livesync_import", store_id, str(path))
    assert all_events(store_id)[0].args == '{"id":[1,2]}'


def test_a_bad_line_is_named_and_nothing_is_imported(store_id, tmp_path):
    path = tmp_path / "log.ndjson"
    path.write_text("\n".join([ndjson_line(1), ndjson_line(2), '{"name": "v1.Broken", "seqNum": "3"}']) + "\n")
    with pytest.raises(CommandError, match=r"line 3: not an event: Expected `int`, got `str`.*nothing imported"):
        run("livesync_import", store_id, str(path))
    assert storage.get_store(store_id) is None


def test_a_line_that_is_not_json_is_named(store_id, tmp_path):
    path = tmp_path / "log.ndjson"
    path.write_text(ndjson_line(1) + "\n\nnot json\n")
    with pytest.raises(CommandError, match="line 3: not an event"):
        run("livesync_import", store_id, str(path))


def test_a_broken_chain_is_named_by_line_and_imports_nothing(store_id, tmp_path):
    path = tmp_path / "log.ndjson"
    lines = [ndjson_line(n) for n in range(1, 4)] + [ndjson_line(5)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError, match="line 4: event e5 has parent e4, but the log ends at e3"):
        run("livesync_import", store_id, str(path))
    assert storage.get_store(store_id) is None

    path.write_text("\n".join([ndjson_line(1), ndjson_line(3, parent=1)]) + "\n")
    with pytest.raises(CommandError, match="line 2: event e3 does not follow its parent e1"):
        run("livesync_import", store_id, str(path))


def test_import_refuses_a_store_with_events_unless_told(store_id, tmp_path):
    seed(store_id)
    before = all_events(store_id)
    path = tmp_path / "log.ndjson"
    path.write_text("\n".join(ndjson_line(n) for n in range(1, 3)) + "\n")
    with pytest.raises(CommandError, match=f"store '{store_id}' already has 7 events; nothing imported"):
        run("livesync_import", store_id, str(path))
    assert all_events(store_id) == before

    with pytest.raises(CommandError, match="line 1: event e1 has parent e0, but the log ends at e7"):
        run("livesync_import", store_id, str(path), "--append")
    assert all_events(store_id) == before

    out, _ = run("livesync_import", store_id, str(path), "--replace")
    assert "Imported 2 events" in out
    assert [(e.seq_num, e.client_id) for e in all_events(store_id)] == [(1, "c"), (2, "c")]


def test_import_append_extends_the_chain(store_id, tmp_path):
    seed(store_id)
    path = tmp_path / "more.ndjson"
    path.write_text("\n".join(ndjson_line(n) for n in range(8, 11)) + "\n")
    run("livesync_import", store_id, str(path), "--append")
    assert [e.seq_num for e in all_events(store_id)] == list(range(1, 11))


def test_a_failed_replace_leaves_the_store_as_it_was(store_id, tmp_path):
    seed(store_id)
    before = all_events(store_id)
    path = tmp_path / "log.ndjson"
    path.write_text("\n".join([ndjson_line(1), "{}"]) + "\n")
    with pytest.raises(CommandError, match="line 2"):
        run("livesync_import", store_id, str(path), "--replace")
    assert all_events(store_id) == before and storage.head(store_id) == 7


def test_unknown_stores_and_files_are_command_errors(store_id, tmp_path):
    with pytest.raises(CommandError, match=f"No store '{store_id}'"):
        run("livesync_export", store_id)
    with pytest.raises(CommandError, match=f"No store '{store_id}'"):
        run("livesync_reset", store_id, "--noinput")
    with pytest.raises(CommandError, match="Cannot read .*missing.ndjson: No such file"):
        run("livesync_import", store_id, str(tmp_path / "missing.ndjson"))


def test_reset_asks_first(store_id, monkeypatch):
    seed(store_id)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    out, _ = run("livesync_reset", store_id)
    assert "Reset cancelled." in out and storage.head(store_id) == 7
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    out, _ = run("livesync_reset", store_id)
    assert f"Reset store '{store_id}': 7 events deleted." in out
    assert storage.head(store_id) == 0 and all_events(store_id) == []


async def test_reset_disconnects_the_stores_sockets(connect, store_id):
    client = await connect()
    await client.push("p", [event(1)])
    assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    await client.recv()
    await sync_to_async(run)("livesync_reset", store_id, "--noinput")
    assert await client.recv_output() == {"type": "websocket.close", "code": 1012}


async def test_import_replace_disconnects_the_stores_sockets(connect, store_id, tmp_path):
    client = await connect()
    await client.push("p", [event(1)])
    assert (await client.recv())["_tag"] == "WSMessage.PushAck"
    await client.recv()
    path = tmp_path / "log.ndjson"
    path.write_text(ndjson_line(1) + "\n")
    await sync_to_async(run)("livesync_import", store_id, str(path), "--replace")
    assert await client.recv_output() == {"type": "websocket.close", "code": 1012}


def test_livesync_create_makes_empty_stores_and_leaves_existing_ones(store_id):
    out = io.StringIO()
    call_command("livesync_create", f"{store_id}-a", f"{store_id}-a", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{store_id}-a: created") and lines[1].startswith(f"{store_id}-a: exists")
    assert storage.store_exists(f"{store_id}-a") and storage.head(f"{store_id}-a") == 0


def test_livesync_create_refuses_store_ids_no_client_could_use(store_id):
    with pytest.raises(CommandError, match="printable"):
        call_command("livesync_create", f"{store_id}-ok", "bad\x00id", stdout=io.StringIO())
    assert not storage.store_exists(f"{store_id}-ok")
