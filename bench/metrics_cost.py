"""What livesync's metrics cost one push, timed in a process of its own: ``python -m bench.metrics_cost``.

Runs the very calls a batch-1 push makes (its outcome and latency, its events,
its group commit, its fan-out, the database pool's waiting count) N times and
prints the microseconds per push as JSON. The servers' push throughput with
metrics on and off (``--metrics``) is the end-to-end figure; this one does not
drown in the machine's noise.
"""

import json
import os
import time

CALLS = 100_000


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livesync_project.settings")
    import django

    django.setup()
    from syncapp import metrics
    from syncapp.storage import db

    started = time.perf_counter()
    for _ in range(CALLS):
        metrics.count_push("0.3", "acknowledged", time.perf_counter())
        metrics.EVENTS_COMMITTED.labels("0.3").inc(1)
        metrics.COMMIT_GROUP_PUSHES.observe(1)
        metrics.FANOUT_SECONDS.labels("local").observe(0.001)
        for _ in range(2):
            waiting = db._Waiting()
            waiting.over()
    print(json.dumps({"microseconds_per_push": (time.perf_counter() - started) / CALLS * 1e6}))


if __name__ == "__main__":
    main()
