"""The admin's store list across store databases: pages without a ``COUNT(*)`` over the registry, storeId
prefix search on the index, the database filter, and a search across every database at once."""

import operator

from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q
from django.utils.functional import cached_property

from ..models import Store
from ..storage import placement

# Stores past which the unfiltered store list shows PostgreSQL's estimate of their number instead of counting.
ESTIMATE_COUNT_FROM = 10_000
# The highest code point: every string starting with a prefix sorts below prefix + this, in binary order.
_AFTER_EVERY_SUFFIX = "\U0010ffff"


class StoreListPaginator(Paginator):
    """The store list's pages, without a ``COUNT(*)`` over the registry where the database keeps a count.

    PostgreSQL counts by scanning, which grows with the number of stores;
    past ESTIMATE_COUNT_FROM its planner's estimate (``pg_class.reltuples``,
    kept by autovacuum) numbers the pages of the unfiltered list. Pages read
    rows with LIMIT/OFFSET on the ``updated_at`` index either way.
    """

    @cached_property
    def count(self):
        estimate = _estimated_store_count(self.object_list.db) if not self.object_list.query.where else None
        return estimate if estimate is not None else super().count


def _estimated_store_count(alias):
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [Store._meta.db_table])
        row = cursor.fetchone()
    return row[0] if row is not None and row[0] >= ESTIMATE_COUNT_FROM else None


def store_id_prefix(term, alias=DEFAULT_DB_ALIAS):
    """Stores whose storeId starts with ``term`` (case-sensitive), as a condition the storeId index of
    database ``alias`` answers.

    A prefix is a range on the index; Django's ``icontains`` search would scan
    every row. On PostgreSQL ``startswith`` is answered by the ``_like`` index
    Django creates for the unique column; SQLite's ``LIKE`` ignores case and
    so no index, hence the explicit range.
    """
    if connections[alias].vendor == "postgresql":
        return Q(store_id__startswith=term)
    return Q(store_id__gte=term, store_id__lt=term + _AFTER_EVERY_SUFFIX)


class StoreDatabaseFilter(admin.SimpleListFilter):
    """Which store database the list shows (when there are several): the first one unless chosen, or every
    one for a storeId search (``StoreChangeList``). ``StoreAdmin.changelist_view`` turns away unknown ones."""

    title = "database"
    parameter_name = "database"

    def lookups(self, request, model_admin):
        return [(alias, alias) for alias in placement.store_databases()]

    def shown(self):
        aliases = placement.store_databases()
        return self.value() if self.value() in aliases else aliases[0]

    def queryset(self, request, queryset):
        return queryset.using(self.shown())

    def choices(self, changelist):
        # "All" for a search only: a list spans one database.
        every = isinstance(changelist, StoreChangeList) and changelist.searches_every_database
        if every:
            yield {
                "selected": True,
                "query_string": changelist.get_query_string(remove=[self.parameter_name]),
                "display": "All (this search)",
            }
        for alias, title in self.lookup_choices:
            yield {
                "selected": not every and alias == self.shown(),
                "query_string": changelist.get_query_string({self.parameter_name: alias}),
                "display": title,
            }


def _searches_every_database(request):
    """Whether the store list is a storeId search with no database chosen, among several."""
    return (
        len(placement.store_databases()) > 1
        and StoreDatabaseFilter.parameter_name not in request.GET
        and bool(request.GET.get(SEARCH_VAR, "").strip())
    )


class StoreChangeList(ChangeList):
    """The store list; a storeId search with no database chosen searches every store database.

    Each database gives its first ``list_per_page`` matches in the list's
    order, and the store whose storeId is the term exactly wherever it ranks:
    one page, merged, of at most that many rows per database. A database with
    more matches says so, and choosing it in the filter pages through them.
    """

    def __init__(self, request, *args, **kwargs):
        self.searches_every_database = _searches_every_database(request)
        super().__init__(request, *args, **kwargs)

    def get_results(self, request):
        if not self.searches_every_database:
            super().get_results(request)
            return
        term = self.query.strip()
        ordering = self.queryset.query.order_by
        rows, more_in = [], []
        for alias in placement.store_databases():
            searched, _ = self.model_admin.get_search_results(request, self.root_queryset.using(alias), term)
            searched = searched.order_by(*ordering)
            found = list(searched[: self.list_per_page + 1])
            if len(found) > self.list_per_page:
                more_in.append(alias)
                found = found[: self.list_per_page]
                if all(store.store_id != term for store in found):
                    found += searched.filter(store_id=term)
            rows += found
        for field in reversed(ordering):
            rows.sort(key=operator.attrgetter(field.removeprefix("-")), reverse=field.startswith("-"))
        if more_in:
            self.model_admin.message_user(
                request,
                f"More stores match in {', '.join(more_in)}: the list shows the first {self.list_per_page} of each "
                "database. Choose a database to see them all.",
                messages.INFO,
            )
        self.result_count = len(rows)
        self.show_full_result_count = False
        self.show_admin_actions = False
        self.full_result_count = None
        self.result_list = rows
        self.can_show_all = False
        self.multi_page = False
        self.paginator = Paginator(rows, max(len(rows), 1))
