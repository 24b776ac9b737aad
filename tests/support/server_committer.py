"""Django code committing to a store while real clients push to it: ``python -m tests.support.server_committer``.

Run with a deployment's environment (``DATABASE_URL``, ``REDIS_URL``). Waits
until the store has its first event (its clients are pushing), then commits
``--count`` todos through ``syncapp.events.commit``, every other pair in one
``transaction.atomic()`` as a webhook handler would, and prints their
seqNums as one JSON list.
"""

import argparse
import json
import os
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--store-id", required=True)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livesync_project.settings")
    import django

    django.setup()
    from django.db import transaction

    from syncapp import events, storage

    deadline = time.monotonic() + options.timeout
    while storage.head(options.store_id) == 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"store {options.store_id!r} got no event within {options.timeout} s")
        time.sleep(0.01)
    committed = []
    for number in range(0, options.count, 2):
        todos = [(f"server-{n:02d}",) for n in range(number, min(number + 2, options.count))]
        created = [("v1.TodoCreated", {"id": todo_id, "text": f"todo {todo_id}"}) for (todo_id,) in todos]
        if number % 4 == 0:
            with transaction.atomic():
                for event in created:
                    committed += events.commit(options.store_id, [event])
        else:
            committed += events.commit(options.store_id, created)
        time.sleep(0.01)
    print(json.dumps(committed))


if __name__ == "__main__":
    main()
