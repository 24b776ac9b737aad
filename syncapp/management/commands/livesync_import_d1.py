from contextlib import closing

from django.core.management.base import BaseCommand, CommandError

from syncapp import storage
from syncapp.management.progress import Progress
from syncapp.management.servers import disconnect_sockets
from syncapp.storage import transfer


class Command(BaseCommand):
    help = (
        "Import the event logs of @livestore/sync-cf from a Cloudflare D1 database: a SQLite file (wrangler dev "
        "keeps it under .wrangler/state/v3/d1/miniflare-D1DatabaseObject/) or the SQL that `wrangler d1 export` "
        "writes. Every eventlog_<version>_<id> table becomes a store; each table's chain is checked while "
        "importing, and a broken table is reported and skipped whole."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", metavar="PATH")
        parser.add_argument(
            "--store",
            action="append",
            default=[],
            metavar="TABLE=STORE_ID",
            help=(
                "The storeId of a table (repeatable). Table names lost the storeId's hyphens, so the default, the "
                "name's suffix, has '_' wherever the storeId had '-' or '_'."
            ),
        )
        parser.add_argument(
            "--replace", action="store_true", help="Replace the events of stores that already have some."
        )

    def handle(self, *args, path, store, replace, **options):
        try:
            database = transfer.open_d1(path)
        except transfer.TransferError as exc:
            raise CommandError(str(exc)) from None
        with closing(database):
            tables, superseded = transfer.d1_tables(database)
            if not tables:
                raise CommandError(f"{path} has no eventlog_<version>_<storeId> tables.")
            explicit = self._explicit_store_ids(store, tables, superseded)
            store_ids = {table.name: explicit.get(table.name, table.suffix) for table in tables}
            for table in superseded:
                self.stdout.write(f"Skipped {table.name}: an older storage version, left behind by a soft reset.")
            failed = []
            stores = events = 0
            for table in tables:
                store_id = store_ids[table.name]
                self.stdout.write(f"{table.name} → store {store_id!r} ({transfer.d1_row_count(database, table)} rows)")
                try:
                    imported = self._import_table(database, table, store_id, replace)
                except transfer.StoreNotEmpty as exc:
                    self.stdout.write(self.style.WARNING(f"  skipped: {exc} (use --replace)"))
                    continue
                except transfer.TransferError as exc:
                    self.stdout.write(self.style.ERROR(f"  skipped, nothing imported: {exc}"))
                    failed.append(table.name)
                    continue
                self.stdout.write(f"  imported {imported.events} events (head e{imported.head})")
                stores += 1
                events += imported.events
        self.stdout.write(self.style.SUCCESS(f"Imported {events} events into {stores} stores from {path}."))
        unsure = [t for t in tables if t.ambiguous and t.name not in explicit and t.name not in failed]
        self._report_ambiguous(unsure, store_ids)
        if failed:
            raise CommandError(f"Not imported (see above): {', '.join(failed)}.")

    def _explicit_store_ids(self, mappings, tables, superseded):
        """``--store TABLE=STORE_ID`` options as a dict, each naming a table to import under a storeId that fits it."""
        by_name = {table.name: table for table in tables}
        older = {table.name for table in superseded}
        explicit = {}
        for mapping in mappings:
            table_name, _, store_id = mapping.partition("=")
            table = by_name.get(table_name)
            if not store_id:
                raise CommandError(f"--store {mapping}: expected TABLE=STORE_ID.")
            if table is None:
                kind = "an older storage version, not imported" if table_name in older else "not in the file"
                raise CommandError(f"--store {mapping}: {table_name} is {kind}.")
            if storage.sanitize(store_id) != table.suffix:
                raise CommandError(
                    f"--store {mapping}: the reference keeps storeId {store_id!r} in "
                    f"eventlog_{table.version}_{storage.sanitize(store_id)}, not in {table_name}."
                )
            explicit[table_name] = store_id
        return explicit

    def _import_table(self, database, table, store_id, replace):
        imported = transfer.import_events(
            store_id,
            transfer.d1_events(database, table),
            existing=transfer.REPLACE if replace else transfer.REFUSE,
            progress=Progress(self.stdout, "imported"),
        )
        if imported.replaced:
            disconnect_sockets(store_id, self.stdout, self.style)
        return imported

    def _report_ambiguous(self, ambiguous, store_ids):
        if not ambiguous:
            return
        self.stdout.write(
            self.style.WARNING(
                "Ambiguous table names: the storeId may have had '-' (or another character) where the name has '_'. "
                "If clients use another storeId, import the table again with --store TABLE=STORE_ID and delete "
                "the store imported under the name's suffix:"
            )
        )
        for table in ambiguous:
            self.stdout.write(f"  {table.name} imported as {store_ids[table.name]!r}")
