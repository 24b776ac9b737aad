import sys

from django.core.management.base import BaseCommand, CommandError

from syncapp.management.progress import Progress
from syncapp.management.servers import disconnect_sockets
from syncapp.storage import transfer


class Command(BaseCommand):
    help = (
        "Import an NDJSON event log (as livesync_export writes it) into a store. Each event must extend the one "
        "before it, exactly as in a push; the whole import is one transaction, so a bad line imports nothing. "
        "A store that already has events is left alone unless --append or --replace is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("store_id", metavar="STORE_ID")
        parser.add_argument("file", metavar="FILE", help="The NDJSON file, or - for standard input.")
        existing = parser.add_mutually_exclusive_group()
        existing.add_argument(
            "--append",
            action="store_const",
            dest="existing",
            const=transfer.APPEND,
            help="Extend the store's events: the log's first event must follow the store's head.",
        )
        existing.add_argument(
            "--replace",
            action="store_const",
            dest="existing",
            const=transfer.REPLACE,
            help="Reset the store first (undone if the import fails) and disconnect its sockets.",
        )
        parser.set_defaults(existing=transfer.REFUSE)

    def handle(self, *args, store_id, file, existing, **options):
        try:
            if file == "-":
                imported = self._import(store_id, sys.stdin.buffer, existing)
            else:
                with open(file, "rb") as lines:
                    imported = self._import(store_id, lines, existing)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        except transfer.StoreNotEmpty as exc:
            raise CommandError(f"{exc}; nothing imported. Use --append or --replace.") from None
        except transfer.TransferError as exc:
            raise CommandError(f"{file}: {exc}; nothing imported.") from None
        if imported.replaced:
            disconnect_sockets(store_id, self.stdout, self.style)
        self.stdout.write(
            self.style.SUCCESS(f"Imported {imported.events} events into store {store_id!r} (head e{imported.head}).")
        )

    def _import(self, store_id, lines, existing):
        return transfer.import_events(
            store_id,
            transfer.parse_ndjson(lines),
            existing=existing,
            progress=Progress(self.stdout, "imported"),
        )
