"""``livesync_tail --handler`` targets for tests: projections into the default database, as a user's would be."""

import time

from django.db import connection


def record_slowly(store_id, events):
    """Record each event once in ``tail_seen`` (its primary key refuses a second time), then dawdle, so that a
    test can kill the tail between pages."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS tail_seen (store_id TEXT NOT NULL, seq_num INTEGER NOT NULL, "
            "PRIMARY KEY (store_id, seq_num))"
        )
        cursor.executemany(
            "INSERT INTO tail_seen (store_id, seq_num) VALUES (%s, %s)", [(store_id, e.seq_num) for e in events]
        )
    time.sleep(0.05)
