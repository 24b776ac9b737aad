"""What a store costs as their number grows (``python -m bench --stores``).

A deployment gives each user, team or document a store, so the number of stores grows with its users. This
creates N new stores on a fresh server, 20 at a time, each by a socket of its own that pushes one event and
closes, and reports per tenth of the run the milliseconds per new store (the tenth's wall time over its
stores), the server's RSS after it, and at the end the database's size per store. Flat cost means the last
tenth costs what the first did; bounded memory means RSS stops growing once the process's caches are full.
"""

import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from bench import procinfo
from bench.runner import run_job
from bench.servers import LivesyncServer, Unavailable

COUNTS = (1000, 10_000)
LARGE_COUNTS = (*COUNTS, 100_000)
CONCURRENCY = 20


def database_bytes(database_url):
    """The size of the server's database: the SQLite file with its WAL, or PostgreSQL's ``pg_database_size``."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        path = Path(parts.path)
        return sum(candidate.stat().st_size for candidate in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def run(backend, count, workdir, timeout, extra_settings=None):
    """One fresh server, ``count`` new stores: per tenth ms/store and RSS, then bytes per store."""
    with LivesyncServer(
        backend, workdir=workdir, name=f"livesync-{backend}-stores", extra_settings=extra_settings
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
    """``{backend: {count: run(...)}}`` for SQLite and, unless ``postgres_problem``, PostgreSQL + Redis."""
    results = {}
    for backend in ("sqlite", "postgres"):
        if backend == "postgres" and postgres_problem:
            results[backend] = {"unavailable": postgres_problem}
            continue
        results[backend] = {}
        for count in LARGE_COUNTS if large else COUNTS:
            log(f"stores: {backend}, {count:,} new stores ...")
            try:
                results[backend][count] = run(backend, count, workdir, timeout)
            except Unavailable as problem:
                results[backend] = {"unavailable": str(problem)}
                break
    return results
