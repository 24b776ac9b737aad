"""``livesync_import_d1``: moving @livestore/sync-cf event logs off Cloudflare D1.

The D1 databases here are built with the reference's own table layout and
statements (``@livestore/sync-cf`` 0.3.1, ``cf-worker/durable-object.js``): the
``CREATE TABLE … strict`` its Durable Object runs (the column spec is what
``makeColumnSpec`` produces for its ``eventlogTable``), and its ``INSERT`` of up
to 14 events at a time with one ``createdAt`` per push and ``JSON.stringify``-ed
args. ``wrangler_export`` writes such a database as ``wrangler d1 export``
does (miniflare's ``dumpSql``).
"""

import io
import json
import re
import sqlite3

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from syncapp import storage
from syncapp.management import progress
from tests.support.v03_client import Client, event

pytestmark = [pytest.mark.protocol, pytest.mark.django_db(transaction=True)]

# makeColumnSpec(eventlogTable.sqliteDef.ast) in @livestore/sync-cf 0.3.1, verbatim.
REFERENCE_COLUMNS = (
    "'seqNum' integer not null , 'parentSeqNum' integer not null , 'name' text not null , 'args' text  , "
    "'createdAt' text not null , 'clientId' text not null , 'sessionId' text not null , PRIMARY KEY ('seqNum')"
)
REFERENCE_CHUNK = 14


def reference_table(store_id, version=7):
    """``eventlog_${PERSISTENCE_FORMAT_VERSION}_${toValidTableName(storeId)}``."""
    return f"eventlog_{version}_{re.sub(r'[^a-zA-Z0-9]', '_', store_id)}"


def pushes(*sizes, client_id="client-a", start=1):
    """Consecutive pushes of ``sizes`` events, each with its own createdAt, as (createdAt, events)."""
    result, n = [], start
    for index, size in enumerate(sizes):
        created_at = f"2025-05-0{index + 1}T10:00:00.{index:03d}Z"
        batch = []
        for _ in range(size):
            batch.append(
                {
                    "name": "v1.TodoCreated",
                    "args": {"id": f"todo-{n}", "text": f"it's todo\n{n}"},
                    "seqNum": n,
                    "parentSeqNum": n - 1,
                    "clientId": client_id,
                    "sessionId": "session-1",
                }
            )
            n += 1
        result.append((created_at, batch))
    return result


def write_d1(path, logs):
    """A D1 database file as the reference's Durable Object leaves it: ``{table: pushes}``."""
    database = sqlite3.connect(path)
    database.execute("CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")
    for table, table_pushes in logs.items():
        database.execute(f"CREATE TABLE IF NOT EXISTS {table} ({REFERENCE_COLUMNS}) strict")
        for created_at, batch in table_pushes:
            for i in range(0, len(batch), REFERENCE_CHUNK):
                chunk = batch[i : i + REFERENCE_CHUNK]
                placeholders = ", ".join("(?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
                params = []
                for e in chunk:
                    args = None if e.get("args") is None else json.dumps(e["args"], separators=(",", ":"))
                    params += [e["seqNum"], e["parentSeqNum"], args, e["name"], created_at]
                    params += [e["clientId"], e["sessionId"]]
                database.execute(
                    f"INSERT INTO {table} (seqNum, parentSeqNum, args, name, createdAt, clientId, sessionId) "
                    f"VALUES {placeholders}",
                    params,
                )
    database.commit()
    database.close()
    return path


def _sql_value(cell):
    """dumpSql's cell text. No cell of an eventlog holds a raw newline (args are JSON), so its
    ``replace(…, char(10))`` form does not arise."""
    if cell is None:
        return "NULL"
    if isinstance(cell, int):
        return str(cell)
    return "'" + cell.replace("'", "''") + "'"


def wrangler_export(database_path, sql_path):
    """The SQL ``wrangler d1 export`` writes for a database (miniflare's ``dumpSql``, tables and rows)."""
    database = sqlite3.connect(database_path)
    statements = ["PRAGMA defer_foreign_keys=TRUE;"]
    tables = database.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql NOT NULL "
        "ORDER BY tbl_name = 'sqlite_sequence', rowid"
    )
    for name, sql in tables.fetchall():
        if name.startswith(("_cf_", "sqlite_")):
            continue
        statements.append(f"{sql};")
        for row in database.execute(f'SELECT * FROM "{name}"'):
            statements.append(f'INSERT INTO "{name}" VALUES({",".join(_sql_value(cell) for cell in row)});')
    database.close()
    sql_path.write_text("\n".join(statements) + "\n")
    return sql_path


def run(*args):
    stdout = io.StringIO()
    call_command(*args, stdout=stdout, stderr=io.StringIO())
    return stdout.getvalue()


async def pull_everything(store_id):
    client = Client(store_id)
    connected, _ = await client.connect()
    assert connected
    chunks = await client.pull_all("pull")
    return client, [item for chunk in chunks for item in chunk["batch"]]


async def test_a_reference_d1_file_imports_and_then_serves_a_client(store_id, tmp_path):
    hyphenated = f"{store_id}-todos"
    logs = {reference_table(hyphenated): pushes(3, 20, 1)}
    path = write_d1(tmp_path / "d1.sqlite", logs)

    mapping = f"{reference_table(hyphenated)}={hyphenated}"
    out = await sync_to_async(run)("livesync_import_d1", str(path), "--store", mapping)
    assert f"{reference_table(hyphenated)} → store '{hyphenated}' (24 rows)" in out
    assert "imported 24 events (head e24)" in out
    assert "Ambiguous" not in out

    client, items = await pull_everything(hyphenated)
    expected = [(e, created_at) for created_at, batch in logs[reference_table(hyphenated)] for e in batch]
    assert [item["eventEncoded"] for item in items] == [e for e, _ in expected]
    assert [item["metadata"]["value"]["createdAt"] for item in items] == [c for _, c in expected]

    await client.push("next", [event(25)])
    assert await client.recv() == {"_tag": "WSMessage.PushAck", "requestId": "next"}
    await client.close()


async def test_wrangler_d1_export_sql_imports_the_same(store_id, tmp_path):
    logs = {reference_table(store_id): pushes(2, 2)}
    sql = wrangler_export(write_d1(tmp_path / "d1.sqlite", logs), tmp_path / "export.sql")
    assert f'INSERT INTO "{reference_table(store_id)}" VALUES(1,0,' in sql.read_text()

    out = await sync_to_async(run)("livesync_import_d1", str(sql), "--store", f"{reference_table(store_id)}={store_id}")
    assert "imported 4 events (head e4)" in out
    client, items = await pull_everything(store_id)
    assert items[0]["eventEncoded"]["args"] == {"id": "todo-1", "text": "it's todo\n1"}
    assert [item["eventEncoded"]["seqNum"] for item in items] == [1, 2, 3, 4]
    await client.close()


def test_table_suffixes_are_the_default_store_ids_and_ambiguous_ones_are_named(store_id, tmp_path):
    plain = store_id.replace("-", "")
    underscored = f"{plain}_a"
    path = write_d1(
        tmp_path / "d1.sqlite",
        {reference_table(plain): pushes(2), reference_table(underscored): pushes(1)},
    )
    out = run("livesync_import_d1", str(path))
    assert storage.head(plain) == 2 and storage.head(underscored) == 1
    assert "Imported 3 events into 2 stores" in out
    ambiguous = out.split("Ambiguous table names")[1]
    assert ambiguous.splitlines()[1:] == [f"  {reference_table(underscored)} imported as '{underscored}'"]


def test_a_broken_table_is_reported_and_skipped_whole(store_id, tmp_path):
    good, broken = f"{store_id}good", f"{store_id}broken"
    gap = pushes(3) + [("2025-05-09T00:00:00.000Z", [{**pushes(1, start=5)[0][1][0]}])]
    path = write_d1(tmp_path / "d1.sqlite", {reference_table(good): pushes(2, 2), reference_table(broken): gap})
    stdout = io.StringIO()
    with pytest.raises(CommandError, match=f"Not imported \\(see above\\): {reference_table(broken)}"):
        call_command("livesync_import_d1", str(path), stdout=stdout)
    out = stdout.getvalue()
    assert "skipped, nothing imported: row 4 (seqNum 5): event e5 has parent e4, but the log ends at e3" in out
    assert storage.get_store(broken.replace("-", "_")) is None
    assert storage.head(good.replace("-", "_")) == 4


def test_a_row_that_is_no_event_skips_its_table(store_id, tmp_path):
    path = tmp_path / "d1.sqlite"
    write_d1(path, {reference_table(store_id): pushes(2)})
    database = sqlite3.connect(path)
    database.execute(f"UPDATE {reference_table(store_id)} SET args = '{{not json' WHERE seqNum = 2")
    database.commit()
    database.close()
    stdout = io.StringIO()
    with pytest.raises(CommandError):
        call_command("livesync_import_d1", str(path), stdout=stdout)
    assert "row 2 (seqNum 2): not an event: JSON is malformed" in stdout.getvalue()
    assert storage.get_store(store_id.replace("-", "_")) is None


def test_stores_with_events_are_skipped_unless_replaced(store_id, tmp_path):
    name = store_id.replace("-", "")
    path = write_d1(tmp_path / "d1.sqlite", {reference_table(name): pushes(2)})
    run("livesync_import_d1", str(path))
    out = run("livesync_import_d1", str(path))
    assert f"skipped: store '{name}' already has 2 events (use --replace)" in out
    write_d1(tmp_path / "d1-newer.sqlite", {reference_table(name): pushes(3, client_id="newer")})
    run("livesync_import_d1", str(tmp_path / "d1-newer.sqlite"), "--replace")
    assert [e.client_id for e in storage.read_page(name, 0, 10).events] == ["newer"] * 3


def test_only_the_newest_storage_version_of_a_store_is_imported(store_id, tmp_path):
    name = store_id.replace("-", "")
    path = write_d1(
        tmp_path / "d1.sqlite",
        {reference_table(name, version=6): pushes(5, client_id="old"), reference_table(name): pushes(2)},
    )
    out = run("livesync_import_d1", str(path))
    assert f"Skipped {reference_table(name, version=6)}: an older storage version" in out
    assert [e.client_id for e in storage.read_page(name, 0, 10).events] == ["client-a"] * 2


def test_progress_is_shown_for_long_tables(store_id, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 10)
    monkeypatch.setattr("syncapp.storage.transfer.IMPORT_CHUNK_SIZE", 5)
    name = store_id.replace("-", "")
    out = run("livesync_import_d1", str(write_d1(tmp_path / "d1.sqlite", {reference_table(name): pushes(25)})))
    assert "imported 10 events…" in out and "imported 20 events…" in out


def test_bad_mappings_and_files_import_nothing(store_id, tmp_path):
    hyphenated = f"{store_id}-x"
    table = reference_table(hyphenated)
    path = write_d1(tmp_path / "d1.sqlite", {table: pushes(1)})
    with pytest.raises(CommandError, match="eventlog_7_nothing is not in the file"):
        run("livesync_import_d1", str(path), "--store", "eventlog_7_nothing=nothing")
    with pytest.raises(CommandError, match=f"keeps storeId 'other-id' in eventlog_7_other_id, not in {table}"):
        run("livesync_import_d1", str(path), "--store", f"{table}=other-id")
    with pytest.raises(CommandError, match="expected TABLE=STORE_ID"):
        run("livesync_import_d1", str(path), "--store", table)
    assert storage.get_store(hyphenated) is None and storage.get_store(table[len("eventlog_7_") :]) is None

    (tmp_path / "notes.txt").write_text("this is not SQL")
    with pytest.raises(CommandError, match="neither a SQLite database nor SQL"):
        run("livesync_import_d1", str(tmp_path / "notes.txt"))
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE other (x)").connection.close()
    with pytest.raises(CommandError, match="has no eventlog_<version>_<storeId> tables"):
        run("livesync_import_d1", str(empty))
    with pytest.raises(CommandError, match="cannot read .*missing.sqlite"):
        run("livesync_import_d1", str(tmp_path / "missing.sqlite"))
