"""How many database threads? livesync's pool against one thread (what database_sync_to_async gives).

Starts daphne on PostgreSQL with LIVESYNC_DATABASE_THREADS=1, 2, 4 and 8 in turn and
pushes 50 stores x 20 single-event pushes concurrently. Prints a table.

    .venv/bin/python -m bench.db_threads
"""

import asyncio
import tempfile
import uuid
from pathlib import Path

from bench.load import many_stores
from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database

STORES, EVENTS = 50, 20


def main():
    rows = []
    with postgres_database() as database_url, tempfile.TemporaryDirectory() as directory:
        for threads in (1, 2, 4, 8):
            settings = {"DATABASE_URL": database_url, "LIVESYNC_DATABASE_THREADS": str(threads)}
            with DaphneServer(Path(directory) / f"daphne-{threads}.log", settings) as server:
                seconds = asyncio.run(many_stores(server.url, STORES, EVENTS, uuid.uuid4().hex[:8]))
            rows.append((threads, seconds))
    baseline = rows[0][1]
    print(f"{'DATABASE_THREADS':>16} | {'50 stores x 20 pushes (s)':>26} | {'events/s':>9} | vs 1 thread")
    for threads, seconds in rows:
        print(f"{threads:>16} | {seconds:>26.2f} | {STORES * EVENTS / seconds:>9.0f} | {baseline / seconds:.2f}x")


if __name__ == "__main__":
    main()
