"""Move the tables an earlier version made in the host's schema into the store schema (``STORE_SCHEMA``)."""

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connections

from syncapp import conf, storage


class Command(BaseCommand):
    help = (
        "Move the eventlog and spare tables that versions before LIVESYNC['STORE_SCHEMA'] made in the "
        "database's own schema into the store schema, one table per transaction. Servers may keep running: "
        "a store whose table moves is found in its new schema at its next statement. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            choices=conf.store_databases(),
            help="A store database to move the tables of (repeatable; default: every one).",
        )

    def handle(self, *args, databases, **options):
        busy = []
        for alias in databases or conf.store_databases():
            if not storage.create_store_schema(alias):
                self.stdout.write(f"{alias}: no store schema (PostgreSQL with LIVESYNC['STORE_SCHEMA'] set): skipped.")
                continue
            moved = 0
            for db_table in storage.tables_to_move(alias):
                try:
                    storage.move_table(alias, db_table)
                except OperationalError:
                    busy.append(f"{alias}: {connections[alias].ops.quote_name(db_table)}")
                    continue
                moved += 1
            self.stdout.write(f"{alias}: moved {moved} tables into schema {storage.store_schema(alias)!r}.")
        if busy:
            raise CommandError(
                f"{len(busy)} tables were in use past {storage.MOVE_LOCK_TIMEOUT} and stay where they are (still "
                f"used there); run the command again: {', '.join(busy)}"
            )
