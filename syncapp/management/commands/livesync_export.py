from django.core.management.base import BaseCommand, CommandError

from syncapp import storage
from syncapp.management.progress import Progress
from syncapp.storage import transfer


class Command(BaseCommand):
    help = (
        "Write a store's events as NDJSON, one event a line, in seqNum order (read page by page, never all at "
        "once). The export ends at the head the store had when it began."
    )

    def add_arguments(self, parser):
        parser.add_argument("store_id", metavar="STORE_ID")
        parser.add_argument("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")

    def handle(self, *args, store_id, output, **options):
        if storage.get_store(store_id) is None:
            raise CommandError(f"No store {store_id!r}.")
        # Standard output may carry the events, so progress and the summary go to stderr.
        progress = Progress(self.stderr, "exported")
        if output is None:
            count = self._export(store_id, lambda data: self.stdout.write(data.decode(), ending=""), progress)
        else:
            with open(output, "wb") as file:
                count = self._export(store_id, file.write, progress)
        self.stderr.write(
            self.style.SUCCESS(f"Exported {count} events of store {store_id!r}" + (f" to {output}" if output else ""))
        )

    def _export(self, store_id, write, progress):
        count = 0
        for events in transfer.export_pages(store_id):
            write(transfer.ndjson(events))
            count += len(events)
            progress(count)
        return count
