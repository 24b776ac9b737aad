from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from syncapp.models import Store


class Command(BaseCommand):
    help = "List the stores, most recently written first, with their event counts and tables."

    def handle(self, *args, **options):
        stores = list(Store.objects.order_by("-updated_at"))
        if not stores:
            self.stdout.write("No stores.")
            return
        header = ("storeId", "events", "last write", "table")
        rows = [
            (store.store_id, str(store.head), store.updated_at.isoformat(timespec="seconds"), store.table_name)
            for store in stores
        ]
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        total = sum(store.head for store in stores)
        self.stdout.write(f"{len(stores)} store{pluralize(len(stores))}, {total} event{pluralize(total)}")
