"""How many database threads? livesync's pool against one thread (what database_sync_to_async gives).

Starts livesync on PostgreSQL + Redis with LIVESYNC_DATABASE_THREADS=1, 2, 4 and 8
in turn and runs the many-stores job (50 stores x 20 single-event pushes at once)
with the bench's load generator. Prints a table.

    .venv/bin/python -m bench.db_threads
"""

import uuid

from bench.runner import run_job
from bench.servers import LivesyncServer

STORES, EVENTS = 50, 20


def main():
    rows = []
    for threads in (1, 2, 4, 8):
        settings = {"LIVESYNC_DATABASE_THREADS": str(threads)}
        with LivesyncServer("postgres", extra_settings=settings) as server:
            job = {
                "kind": "many",
                "urls": server.urls,
                "stores": STORES,
                "events": EVENTS,
                "prefix": uuid.uuid4().hex[:8],
            }
            result = run_job(job, server_pids=server.pids)
        rows.append((threads, result["wall_s"]))
    baseline = rows[0][1]
    print(f"{'DATABASE_THREADS':>16} | {'50 stores x 20 pushes (s)':>26} | {'events/s':>9} | vs 1 thread")
    for threads, seconds in rows:
        print(f"{threads:>16} | {seconds:>26.2f} | {STORES * EVENTS / seconds:>9.0f} | {baseline / seconds:.2f}x")


if __name__ == "__main__":
    main()
