"""What a store costs as their number grows (``python -m bench --stores``).

A deployment gives each user, team or document a store, so the number of stores grows with its users. This
creates N new stores on a fresh server, 20 at a time, each by a socket of its own that pushes one event and
closes, and reports per tenth of the run the milliseconds per new store (the tenth's wall time over its
stores), the server's RSS after it, and at the end the database's size per store. Flat cost means the last
tenth costs what the first did; bounded memory means RSS stops growing once the process's caches are full.

It also times a new store's first push on its own (``first_pushes``): on PostgreSQL with spare tables
(``SPARE_TABLES``, the default) and without, alternating.
"""

import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from bench import procinfo
from bench.runner import run_job
from bench.servers import LivesyncServer, Unavailable
from syncapp.conf import DEFAULTS

COUNTS = (1000, 10_000)
LARGE_COUNTS = (*COUNTS, 100_000)
CONCURRENCY = 20
# New stores whose first push is timed, one at a time, this far apart (the spares taken are made again meanwhile).
FIRST_PUSHES = 100
FIRST_PUSH_PAUSE_S = 0.05
FIRST_PUSH_ROUNDS = 2
# SQLite files the second configuration spreads its stores over (``STORE_DATABASES``): SQLite's CREATE TABLE
# reads its file's whole schema table, so one file's cost per new store grows with its tables (README).
SPREAD_FILES = 16
# What is measured: (name, backend, SQLite files the stores are spread over).
CONFIGURATIONS = (
    ("sqlite", "sqlite", 0),
    (f"sqlite-{SPREAD_FILES}-files", "sqlite", SPREAD_FILES),
    ("postgres", "postgres", 0),
)


def database_bytes(database_url):
    """The size of the server's databases: its SQLite files with their WALs, or PostgreSQL's ``pg_database_size``."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        return sum(candidate.stat().st_size for candidate in Path(parts.path).parent.glob("*.sqlite3*"))
    import psycopg

    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def run(backend, count, workdir, timeout, extra_settings=None, store_files=0):
    """One fresh server, ``count`` new stores: per tenth ms/store and RSS, then bytes per store."""
    with LivesyncServer(
        backend,
        workdir=workdir,
        name=f"livesync-{backend}-stores",
        extra_settings=extra_settings,
        store_files=store_files,
    ) as server:
        run_job({"kind": "warmup", "urls": server.urls, "store": f"stores-warm-{uuid.uuid4().hex[:6]}"}, server.pids)
        size_before = database_bytes(server.database_url)
        rss_before = procinfo.rss(server.pids)
        rss_after = []

        def on_ready(info):
            rss_after.append(procinfo.rss(server.pids))

        started = time.monotonic()
        result = run_job(
            {
                "kind": "new_stores",
                "url": server.url,
                "stores": count,
                "concurrency": CONCURRENCY,
                "prefix": f"stores-{uuid.uuid4().hex[:8]}",
            },
            server.pids,
            on_ready=on_ready,
            timeout=timeout,
            sample_memory=False,
        )
        size_after = database_bytes(server.database_url)
    return {
        "stores": count,
        "ms_per_store": [1000 * s / n for s, n in zip(result["tenths_s"], result["tenths_stores"], strict=True)],
        "rss_before": rss_before,
        "rss_after": rss_after,
        "database_bytes_per_store": (size_after - size_before) / count,
        "wall_s": time.monotonic() - started,
        "server_cpu_ms_per_store": 1000 * result["server_cpu_s"] / count,
    }


def measure(workdir, large=False, postgres_problem=None, timeout=3600.0, log=print):
    """``{configuration: {count: run(...)}}`` for each of CONFIGURATIONS; PostgreSQL + Redis is left out with
    ``postgres_problem``."""
    results = {}
    for name, backend, store_files in CONFIGURATIONS:
        if backend == "postgres" and postgres_problem:
            results[name] = {"unavailable": postgres_problem}
            continue
        results[name] = {}
        for count in LARGE_COUNTS if large else COUNTS:
            log(f"stores: {name}, {count:,} new stores ...")
            try:
                results[name][count] = run(backend, count, workdir, timeout, store_files=store_files)
            except Unavailable as problem:
                results[name] = {"unavailable": str(problem)}
                break
    return results


def first_pushes(spare_tables, workdir, timeout):
    """ack ms (p50/p95/p99) of FIRST_PUSHES new stores' first pushes on a fresh PostgreSQL server."""
    with LivesyncServer(
        "postgres",
        workdir=workdir,
        name="livesync-postgres-first-pushes",
        extra_settings={"LIVESYNC_SPARE_TABLES": str(spare_tables)},
    ) as server:
        prefix = f"first-{uuid.uuid4().hex[:8]}"
        job = {"kind": "first_pushes", "url": server.url, "pause_s": FIRST_PUSH_PAUSE_S, "prefix": prefix}
        run_job({**job, "stores": 5, "prefix": prefix + "-warm"}, server.pids, timeout=timeout)
        return run_job({**job, "stores": FIRST_PUSHES}, server.pids, timeout=timeout)["ack_ms"]


def measure_first_pushes(workdir, postgres_problem=None, timeout=600.0, log=print):
    """``{"spares": [ack_ms per round], "no spares": [...]}`` on PostgreSQL + Redis, rounds alternating; or
    ``{"unavailable": why}``."""
    if postgres_problem:
        return {"unavailable": postgres_problem}
    results = {"spares": [], "no spares": []}
    settings = {"spares": DEFAULTS["SPARE_TABLES"], "no spares": 0}
    for number in range(FIRST_PUSH_ROUNDS):
        for name in list(settings) if number % 2 == 0 else list(settings)[::-1]:
            log(f"stores: first pushes on PostgreSQL, {name} (round {number + 1} of {FIRST_PUSH_ROUNDS}) ...")
            results[name].append(first_pushes(settings[name], workdir, timeout))
    return results
