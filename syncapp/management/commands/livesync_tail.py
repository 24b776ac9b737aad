import signal
import time

import msgspec
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

from syncapp import storage
from syncapp.management import tail
from syncapp.management.progress import Progress
from syncapp.storage import transfer


class Command(BaseCommand):
    help = (
        "Follow stores' logs for the consumer NAME from its saved cursors, handing every event to a handler "
        "(by default: NDJSON lines with their storeId on standard output). Resumes where the last run stopped, "
        "also after a crash. See syncapp/management/tail.py for the delivery guarantee."
    )

    def add_arguments(self, parser):
        parser.add_argument("consumer", metavar="NAME", help="The consumer whose cursors to use and move.")
        parser.add_argument("store_ids", metavar="STORE_ID", nargs="*", help="Stores to follow (default: all).")
        parser.add_argument(
            "--handler", metavar="IMPORT_STRING", help="A callable(store_id, events) run for each page of events."
        )
        parser.add_argument("--once", action="store_true", help="Consume what is there now, then stop.")
        parser.add_argument(
            "--interval", type=float, default=1.0, metavar="SECONDS", help="Pause between rounds that found nothing."
        )
        parser.add_argument("--page-size", type=int, default=tail.PAGE_EVENTS, metavar="EVENTS")

    def handle(self, *args, consumer, store_ids, handler, once, interval, page_size, **options):
        if page_size < 1 or interval <= 0:
            raise CommandError("--page-size and --interval must be positive.")
        for store_id in store_ids:
            if storage.get_store(store_id) is None:
                raise CommandError(f"No store {store_id!r}.")
        if handler is None:
            handle_page = self._write_ndjson
        else:
            try:
                handle_page = import_string(handler)
            except ImportError as exc:
                raise CommandError(f"--handler {handler!r} cannot be imported: {exc}") from None
        # Standard output may carry the events, so progress and the summary go to stderr.
        follower = tail.Tail(
            consumer, handle_page, store_ids or None, page_events=page_size, progress=Progress(self.stderr, "tailed")
        )
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        try:
            while not stopping:
                found = follower.round()
                if once:
                    break
                if not found:
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass
        self.stderr.write(self.style.SUCCESS(f"Tailed {follower.consumed} events for {consumer!r}."))

    def _write_ndjson(self, store_id, events):
        prefix = msgspec.json.encode({"storeId": store_id})[:-1] + b","
        lines = transfer.ndjson(events).splitlines(keepends=True)
        self.stdout.write(b"".join(prefix + line[1:] for line in lines).decode(), ending="")
        self.stdout.flush()
