from django.core.management.base import BaseCommand, CommandError

from syncapp import storage
from syncapp.core import eventlog
from syncapp.management.servers import warn_if_servers_unreached


class Command(BaseCommand):
    help = "Delete every event of a store, set its head back to 0 and disconnect its sockets."

    def add_arguments(self, parser):
        parser.add_argument("store_id", metavar="STORE_ID")
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive", help="Do not ask for confirmation."
        )

    def handle(self, *args, store_id, interactive, **options):
        store = storage.get_store(store_id)
        if store is None:
            raise CommandError(f"No store {store_id!r}.")
        if interactive:
            answer = input(
                f"This deletes all {store.head} events of store {store_id!r}; clients keep only what they hold.\n"
                "Type 'yes' to continue, or 'no' to cancel: "
            )
            if answer != "yes":
                self.stdout.write("Reset cancelled.")
                return
        eventlog.reset_blocking(store_id)
        warn_if_servers_unreached(self.stdout, self.style)
        self.stdout.write(self.style.SUCCESS(f"Reset store {store_id!r}: {store.head} events deleted."))
