"""Create stores (their registry rows and tables) ahead of clients, for LIVESYNC["CREATE_STORES"] = False."""

from django.core.management.base import BaseCommand, CommandError

from syncapp import storage
from syncapp.server import handshake


class Command(BaseCommand):
    help = "Create the given stores (empty) unless they exist; clients can then connect to them."

    def add_arguments(self, parser):
        parser.add_argument("stores", nargs="+", help="storeIds")

    def handle(self, *args, stores, **options):
        for store_id in stores:
            problem = handshake.store_id_problem(store_id)
            if problem is not None:
                raise CommandError(f"storeId {store_id!r} {problem}; nothing was created")
        for store_id in stores:
            existed = storage.store_exists(store_id)
            store = storage.open_store(store_id)
            self.stdout.write(f"{store_id}: {'exists' if existed else 'created'} ({store.table_name})")
