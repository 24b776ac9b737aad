"""A store in the admin: its page (events read-only, args bounded), and creating, resetting, exporting and
deleting it. Everything goes through ``storage``; a reset or a delete is announced with
``broadcast.announce_reset`` so the store's sockets, in every server process, reconnect instead of holding a
history that no longer exists."""

import json
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import DEFAULT_DB_ALIAS, transaction
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import content_disposition_header
from django.utils.timesince import timesince

from .. import storage
from ..core import eventlog
from ..fanout import broadcast, presence
from ..fanout.hub import existing_hub
from ..models import Store, StorePlacement
from ..protocol import wire
from ..protocol.generations import V03, V04
from ..server import handshake
from ..storage import db, placement, transfer
from .store_list import (
    StoreChangeList,
    StoreDatabaseFilter,
    StoreListPaginator,
    _searches_every_database,
    store_id_prefix,
)

EVENTS_PER_PAGE = 50
# A store's page shows at most this much of each event's args, so that its size does not depend on what
# clients stored: args up to ARGS_PRETTY_CHARS long and within the nesting limit are indented for reading
# (indenting grows text with its depth, which the limit bounds), others are shown as stored.
ARGS_SHOWN_CHARS = 4_000
ARGS_PRETTY_CHARS = 2_000


async def _socket_counts(store_ids):
    """Connected sockets per store, when they can be known; else None.

    With Redis, every server process records its own counts there
    (``syncapp.fanout.presence``), which the admin sums. With the in-memory channel
    layer there is one server process, so when the admin runs in it (on its
    event loop, where ``async_to_sync`` puts this) its hub's count is the whole
    count; an admin elsewhere cannot know it.
    """
    if presence.available():
        try:
            return await presence.socket_counts(store_ids)
        except Exception:  # noqa: BLE001 - Redis down: the page shows "-" rather than failing
            return None
    hub = existing_hub()
    if hub is None or not isinstance(hub.layer, InMemoryChannelLayer):
        return None
    return [hub.socket_count(store_id) for store_id in store_ids]


def _disconnect_sockets(store_id):
    async_to_sync(broadcast.announce_reset)(store_id)


def _delete_store(store_id):
    """Drop the store's table and row, and disconnect its sockets, once the admin's transaction commits.

    Django runs the delete view in a transaction: sockets must hear of a delete
    only once it is certain. Outside a transaction this runs at once.
    """

    def drop():
        storage.delete(store_id)
        _disconnect_sockets(store_id)

    transaction.on_commit(drop)


@dataclass(frozen=True)
class ShownArgs:
    """An event's args as its store's page shows them, and a note saying how they differ from what is stored."""

    text: str
    note: str = ""


def _shown_args(args):
    """Args indented for reading when short and within the nesting limit, else as stored; cut at ARGS_SHOWN_CHARS."""
    if args is None:
        return ShownArgs("")
    text, notes = args, []
    if len(args) > ARGS_PRETTY_CHARS:
        notes.append(f"as stored (over {ARGS_PRETTY_CHARS:,} characters)")
    elif wire.args_too_deep(args):
        notes.append(f"as stored: nested more than {wire.MAX_ARGS_DEPTH} levels deep (the nesting limit)")
    else:
        try:
            text = json.dumps(json.loads(args), indent=2, ensure_ascii=False)
        except ValueError:
            notes.append("as stored: not JSON")
    if len(text) > ARGS_SHOWN_CHARS:
        notes.append(f"the first {ARGS_SHOWN_CHARS:,} of {len(text):,} characters: the store's export has them all")
        text = text[:ARGS_SHOWN_CHARS]
    return ShownArgs(text, "; ".join(notes))


async def _ndjson_stream(store_id):
    """The store's NDJSON export as an async iterator, so an ASGI server streams it instead of buffering it.

    Each page is read on the database pool; one page is in memory at a time.
    """
    pages = transfer.export_pages(store_id)
    while (events := await db.run(next, pages, None)) is not None:
        yield transfer.ndjson(events)


def _clean_new_store_id(form):
    """The add form takes the storeIds a client could connect to, and no other."""
    store_id = form.cleaned_data["store_id"]
    problem = handshake.store_id_problem(store_id)
    if problem is not None:
        raise ValidationError(f"A storeId {problem}.")
    return store_id


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = (
        "store_id",
        "table_name",
        "head",
        "event_count",
        "created_at",
        "last_write",
        "client_generations",
        "sockets",
    )
    search_fields = ("store_id",)
    search_help_text = "Stores whose storeId starts with this (case-sensitive)."
    ordering = ("-updated_at",)
    paginator = StoreListPaginator
    # Django would count the whole registry a second time on every page for "(N total)".
    show_full_result_count = False
    readonly_fields = (
        "store_id",
        "table_name",
        "head",
        "backend_id",
        "created_at",
        "updated_at",
        "last_v03_client_at",
        "last_v04_client_at",
    )
    actions = ("reset_stores", "export_store")
    change_form_template = "syncapp/admin/store_change_form.html"
    delete_confirmation_template = "syncapp/admin/store_delete_confirmation.html"
    delete_selected_confirmation_template = "syncapp/admin/store_delete_selected_confirmation.html"

    def get_list_filter(self, request):
        return (StoreDatabaseFilter,) if len(placement.store_databases()) > 1 else ()

    def get_list_display(self, request):
        return (*self.list_display, "database") if len(placement.store_databases()) > 1 else self.list_display

    def get_changelist(self, request, **kwargs):
        return StoreChangeList

    def get_actions(self, request, action_location=None):
        # An action acts on a queryset, which is one database's: a search across databases offers none (each
        # store's page has reset, export and delete). Django 6.1 says where the actions show
        # (``action_location``); the earlier supported versions call this with the request alone.
        if _searches_every_database(request):
            return {}
        if action_location is None:
            return super().get_actions(request)
        return super().get_actions(request, action_location=action_location)

    def changelist_view(self, request, extra_context=None):
        """The store list; a ``?database=`` that is no store database is turned away with a message saying so,
        to the list without it, instead of silently showing another database.

        Django answers a lookup it cannot make by redirecting to ``?e=1``,
        which says nothing of what was wrong; this names it and keeps the
        rest of the query (a search goes on, across every database).
        """
        chosen = request.GET.get(StoreDatabaseFilter.parameter_name)
        aliases = placement.store_databases()
        if chosen is not None and len(aliases) > 1 and chosen not in aliases:
            self.message_user(
                request,
                f"There is no store database {chosen!r}: LIVESYNC['STORE_DATABASES'] has {', '.join(aliases)}.",
                messages.ERROR,
            )
            rest = request.GET.copy()
            del rest[StoreDatabaseFilter.parameter_name]
            return HttpResponseRedirect(f"{request.path}?{rest.urlencode()}" if rest else request.path)
        return super().changelist_view(request, extra_context)

    def get_object(self, request, object_id, from_field=None):
        """The store with this id in whichever database holds it."""
        if from_field is not None or len(placement.store_databases()) == 1:
            return super().get_object(request, object_id, from_field)
        try:
            pk = int(object_id)
        except ValueError:
            return None
        alias = StorePlacement.objects.using(DEFAULT_DB_ALIAS).filter(pk=pk).values_list("database", flat=True).first()
        if alias is None:
            return None
        return self.get_queryset(request).using(alias).filter(pk=pk).first()

    def get_readonly_fields(self, request, obj=None):
        # Adding a store asks for its storeId alone; an existing store has no editable field.
        return () if obj is None else self.readonly_fields

    def get_fields(self, request, obj=None):
        return ("store_id",) if obj is None else super().get_fields(request, obj)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is None:
            form.clean_store_id = _clean_new_store_id
        return form

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if object_id is None:
            # Adding creates the store in storage's own transaction, not inside the one Django's change form
            # opens: on SQLite that one holds the database's write lock from its start to the end of the
            # request, and every push of the process would wait for it.
            return self._changeform_view(request, object_id, form_url, extra_context)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        """A store added by hand is created as a first push creates one: its row, its table, its backendId.

        This is how stores come to exist under ``LIVESYNC["CREATE_STORES"] = False``.
        """
        created = storage.open_store(obj.store_id)
        obj.pk, obj.table_name, obj.backend_id = created.pk, created.table_name, created.backend_id

    def has_change_permission(self, request, obj=None):
        # A store has no editable field: its page is a view (with its events) for
        # everyone, and "change" is what its actions do: reset.
        return obj is None and super().has_change_permission(request)

    # The change list

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(store_id_prefix(term, queryset.db)), False

    @admin.display(description="events", ordering="head")
    def event_count(self, store):
        # seqNums run 1..head without a gap, so the head is the count.
        return store.head

    @admin.display(description="updated (last push)", ordering="updated_at")
    def last_write(self, store):
        return store.updated_at

    @admin.display(description="client protocols (last seen)")
    def client_generations(self, store):
        """Which LiveStore protocol generations the store's clients used, most recent first."""
        seen = [
            (at, generation)
            for generation, at in ((V03, store.last_v03_client_at), (V04, store.last_v04_client_at))
            if at is not None
        ]
        if not seen:
            return "-"
        return ", ".join(f"{generation} ({timesince(at)} ago)" for at, generation in sorted(seen, reverse=True))

    @admin.display(description="connected sockets")
    def sockets(self, store):
        return store.socket_count

    @admin.display(description="database")
    def database(self, store):
        return store._state.db

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        stores = list(changelist.result_list)
        counts = async_to_sync(_socket_counts)([store.store_id for store in stores]) or [None] * len(stores)
        for store, count in zip(stores, counts, strict=True):
            store.socket_count = count
        return changelist

    # A store's page and its events

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = dict(extra_context or {})
        store = self.get_object(request, unquote(object_id))
        if store is not None and self.has_view_permission(request, store):
            context.update(self._events_context(request, store))
            context["can_reset"] = self.has_change_permission(request)
        return super().change_view(request, object_id, form_url, context)

    def _events_context(self, request, store):
        """One page of the store's events, filtered by name and clientId, read with LIMIT/OFFSET."""
        filters = {
            field: request.GET[param]
            for param, field in (("event_name", "name"), ("event_client_id", "client_id"))
            if request.GET.get(param)
        }
        storage.open_store(store.store_id)
        events = storage.events_of(store)
        events = events.filter(seq_num__lte=store.head, **filters)
        paginator = Paginator(events.order_by("seq_num"), EVENTS_PER_PAGE)
        if not filters:
            paginator.count = store.head  # known without a COUNT(*): seqNums run 1..head
        page = paginator.get_page(request.GET.get("events_page"))
        return {
            "event_filters": filters,
            "event_page": page,
            "event_rows": [(event, _shown_args(event.args)) for event in page],
        }

    # Reset

    @admin.action(description="Reset selected stores (delete their events)", permissions=["change"])
    def reset_stores(self, request, queryset):
        if request.POST.get("post"):
            self._reset(request, list(queryset))
            return None
        return self._reset_confirmation(request, list(queryset), action="reset_stores")

    def reset_view(self, request, object_id):
        store = self._get_store_or_404(request, object_id)
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            self._reset(request, [store])
            change_url = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change"
            return HttpResponseRedirect(reverse(change_url, args=[store.pk]))
        return self._reset_confirmation(request, [store], action=None)

    def _reset(self, request, stores):
        for store in stores:
            eventlog.reset_blocking(store.store_id)
            self.log_change(request, store, f"Reset: {store.head} events deleted.")
        deleted = sum(store.head for store in stores)
        self.message_user(
            request, f"Reset {len(stores)} store(s): {deleted} events deleted, sockets disconnected.", messages.SUCCESS
        )

    def _reset_confirmation(self, request, stores, action):
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": "Reset stores?",
            "opts": self.opts,
            "stores": stores,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "syncapp/admin/store_reset_confirmation.html", context)

    # Export

    @admin.action(description="Export selected store as NDJSON", permissions=["view"])
    def export_store(self, request, queryset):
        stores = list(queryset[:2])
        if len(stores) != 1:
            self.message_user(request, "Select exactly one store to export: an export is one file.", messages.WARNING)
            return None
        return self._export_response(stores[0])

    def export_view(self, request, object_id):
        store = self._get_store_or_404(request, object_id)
        if not self.has_view_permission(request, store):
            raise PermissionDenied
        return self._export_response(store)

    def _export_response(self, store):
        response = StreamingHttpResponse(_ndjson_stream(store.store_id), content_type="application/x-ndjson")
        response["Content-Disposition"] = content_disposition_header(True, f"{store.store_id}.ndjson")
        return response

    # Delete: Django's views and confirmation pages; the table goes with the row.

    def delete_model(self, request, obj):
        _delete_store(obj.store_id)

    def delete_queryset(self, request, queryset):
        for store in queryset:
            _delete_store(store.store_id)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name="{}_{}_export".format(*info),
            ),
            path(
                "<path:object_id>/reset/", self.admin_site.admin_view(self.reset_view), name="{}_{}_reset".format(*info)
            ),
            *super().get_urls(),
        ]

    def _get_store_or_404(self, request, object_id):
        store = self.get_object(request, unquote(object_id))
        if store is None:
            raise Http404(f"No store with primary key {object_id!r}.")
        return store
