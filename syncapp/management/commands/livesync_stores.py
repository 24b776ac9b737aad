from django.core.management.base import BaseCommand
from django.db.models import Count, Max, Sum
from django.db.models.functions import Length
from django.template.defaultfilters import pluralize

from syncapp.models import Store

# Registry rows fetched per round trip while the list streams.
ROWS_PER_FETCH = 2000
HEADER = ("storeId", "events", "last write", "table")


class Command(BaseCommand):
    help = "List the stores, most recently written first, with their event counts and tables."

    def handle(self, *args, **options):
        """One aggregate query sizes the columns and sums the events; the rows then stream, so that a
        registry of any size is listed in constant memory."""
        totals = Store.objects.aggregate(
            stores=Count("pk"),
            events=Sum("head"),
            store_id_width=Max(Length("store_id")),
            highest_head=Max("head"),
            table_width=Max(Length("table_name")),
        )
        if not totals["stores"]:
            self.stdout.write("No stores.")
            return
        widths = [
            max(len(HEADER[0]), totals["store_id_width"]),
            max(len(HEADER[1]), len(str(totals["highest_head"]))),
            len("2026-01-01T00:00:00+00:00"),
            max(len(HEADER[3]), totals["table_width"]),
        ]
        self._write_row(HEADER, widths)
        rows = Store.objects.order_by("-updated_at", "-pk").values_list("store_id", "head", "updated_at", "table_name")
        for store_id, head, updated_at, table_name in rows.iterator(chunk_size=ROWS_PER_FETCH):
            self._write_row((store_id, str(head), updated_at.isoformat(timespec="seconds"), table_name), widths)
        stores, events = totals["stores"], totals["events"]
        self.stdout.write(f"{stores} store{pluralize(stores)}, {events} event{pluralize(events)}")

    def _write_row(self, cells, widths):
        self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
