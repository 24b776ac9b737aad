"""The machine's limits for one push, measured in the same run as livesync (``python -m bench --ceilings``).

A batch-1 push is at best one WebSocket round trip through daphne plus one durable commit. The bench times
both on their own, on the same machine and in the same minute as livesync's own figures, so a push rate
reads as a share of what the machine allows rather than as a number whose meaning drifts with its load:

- a bare Channels echo consumer under daphne (``bench.echo_asgi``), sequential round trips of a push-sized
  frame, with the daphne process's CPU per round trip;
- one PostgreSQL connection committing one eventlog-shaped row per transaction (``synchronous_commit=on``),
  as one self-committing ``INSERT`` (one round trip, as livesync commits a lone push), and 100 rows per
  transaction;
- SQLite in WAL mode with ``synchronous=FULL`` (the embedded default's settings), one row per transaction.
"""

import asyncio
import sqlite3
import time
from pathlib import Path

from bench import frames, procinfo, wsraw

SECONDS = 3.0
WARM_UP_ROUND_TRIPS = 200
ROW = ("v1.TodoCreated", '{"id":"todo","text":"todo"}', "2026-01-01T00:00:00.000Z", "bench", "bench-session")
TABLE = (
    'CREATE TABLE {name} ("seqNum" integer PRIMARY KEY, "parentSeqNum" integer NOT NULL, name text NOT NULL, '
    'args text, "createdAt" text NOT NULL, "clientId" text NOT NULL, "sessionId" text NOT NULL)'
)


async def _round_trips(url, seconds):
    client = await wsraw.connect(f"{url}/echo")
    frame = frames.todo_push(frames.request_id("echo", 0), 1, 1)
    for _ in range(WARM_UP_ROUND_TRIPS):
        client.send(frame)
        await client.recv()
    count, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        client.send(frame)
        await client.recv()
        count += 1
    elapsed = time.monotonic() - started
    await client.close()
    return count, elapsed


def echo(workdir, seconds=SECONDS):
    """Sequential round trips/s through a bare Channels consumer under daphne, and daphne's CPU per trip."""
    from tests.support.daphne import DaphneServer

    with DaphneServer(Path(workdir) / "echo-daphne.log", application="bench.echo_asgi:application") as server:
        cpu_before = procinfo.cpu_seconds([server.pid])
        count, elapsed = asyncio.run(_round_trips(server.url, seconds))
        cpu = procinfo.cpu_seconds([server.pid]) - cpu_before
    # The warm-up's CPU is counted too; it is a small share of the measured trips.
    return {"per_s": count / elapsed, "server_cpu_ms": 1000 * cpu / (count + WARM_UP_ROUND_TRIPS)}


def _commits(execute, commit, seconds, rows_per_commit):
    seq, count, started = 0, 0, time.monotonic()
    while time.monotonic() - started < seconds:
        rows = [(seq + i + 1, seq + i, *ROW) for i in range(rows_per_commit)]
        execute(rows)
        commit()
        seq += rows_per_commit
        count += 1
    return count * rows_per_commit / (time.monotonic() - started)


def postgres(seconds=SECONDS):
    """Single-row commits/s and events/s in 100-row commits on one connection; None without PostgreSQL."""
    import psycopg

    from tests.support.databases import postgres_database

    results = {}
    with postgres_database() as url, psycopg.connect(url) as connection:
        connection.execute("SET synchronous_commit = on")
        for rows_per_commit in (1, 100):
            table = f"ceiling_{rows_per_commit}"
            connection.execute(TABLE.format(name=table))
            connection.commit()
            # A lone row commits by itself: BEGIN, INSERT and COMMIT as three statements would time two or
            # three round trips, not the commit (2,160 against 3,273 commits/s here).
            connection.autocommit = rows_per_commit == 1
            commit = (lambda: None) if connection.autocommit else connection.commit
            insert = f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)"
            with connection.cursor() as cursor:
                results[rows_per_commit] = _commits(
                    lambda rows, cursor=cursor, insert=insert: cursor.executemany(insert, rows),
                    commit,
                    seconds,
                    rows_per_commit,
                )
    return {"commits_per_s": results[1], "events_per_s_100": results[100]}


def sqlite(workdir, seconds=SECONDS):
    """Single-row commits/s of SQLite with the embedded default's journal settings."""
    connection = sqlite3.connect(Path(workdir) / "ceiling.sqlite3", isolation_level="IMMEDIATE")
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(TABLE.format(name="ceiling"))
        connection.commit()
        insert = "INSERT INTO ceiling VALUES (?, ?, ?, ?, ?, ?, ?)"
        return {
            "commits_per_s": _commits(lambda rows: connection.executemany(insert, rows), connection.commit, seconds, 1)
        }
    finally:
        connection.close()


def measure(workdir, postgres_problem=None):
    """Every ceiling; PostgreSQL's is left out (with the reason) when it is not reachable."""
    result = {"echo": echo(workdir), "sqlite": sqlite(workdir)}
    result["postgres"] = {"unavailable": postgres_problem} if postgres_problem else postgres()
    return result
