import heapq
from operator import itemgetter

from django.core.management.base import BaseCommand
from django.db.models import Count, Max, Sum
from django.db.models.functions import Length
from django.template.defaultfilters import pluralize

from syncapp.models import Store
from syncapp.storage import placement

# Registry rows fetched per round trip while the list streams.
ROWS_PER_FETCH = 2000
HEADER = ("storeId", "events", "last write", "table", "database")


class Command(BaseCommand):
    help = "List the stores, most recently written first, with their event counts and tables."

    def handle(self, *args, **options):
        """One aggregate query per store database sizes the columns and sums the events; the rows then
        stream, merged across databases in order, so that registries of any size list in constant memory."""
        aliases = placement.store_databases()
        totals = [
            Store.objects.using(alias).aggregate(
                stores=Count("pk"),
                events=Sum("head"),
                store_id_width=Max(Length("store_id")),
                highest_head=Max("head"),
                table_width=Max(Length("table_name")),
            )
            for alias in aliases
        ]
        stores = sum(total["stores"] for total in totals)
        if not stores:
            self.stdout.write("No stores.")
            return
        events = sum(total["events"] or 0 for total in totals)
        widths = [
            max(len(HEADER[0]), *(total["store_id_width"] or 0 for total in totals)),
            max(len(HEADER[1]), *(len(str(total["highest_head"] or 0)) for total in totals)),
            len("2026-01-01T00:00:00+00:00"),
            max(len(HEADER[3]), *(total["table_width"] or 0 for total in totals)),
            max(len(HEADER[4]), *map(len, aliases)),
        ]
        # The database column only says something when there are several.
        shown = len(HEADER) if len(aliases) > 1 else len(HEADER) - 1
        self._write_row(HEADER[:shown], widths[:shown])
        for store_id, head, updated_at, table_name, _, alias in heapq.merge(
            *(self._rows(alias) for alias in aliases), key=itemgetter(2, 4), reverse=True
        ):
            cells = (store_id, str(head), updated_at.isoformat(timespec="seconds"), table_name, alias)
            self._write_row(cells[:shown], widths[:shown])
        self.stdout.write(f"{stores} store{pluralize(stores)}, {events} event{pluralize(events)}")

    def _rows(self, alias):
        """The database's stores, most recently written first (ids are unique across databases)."""
        rows = Store.objects.using(alias).order_by("-updated_at", "-pk")
        for row in rows.values_list("store_id", "head", "updated_at", "table_name", "pk").iterator(ROWS_PER_FETCH):
            yield (*row, alias)

    def _write_row(self, cells, widths):
        self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
