"""Durable consumption of stores' logs: what ``manage.py livesync_tail`` does, round after round.

A consumer has a name and one saved cursor per store (``TailCursor``, in the
default database). Each page of events is handed to the consumer's handler,
``handler(store_id, events)``, and the cursor moves past the page in the same
transaction of the default database. A handler that writes only there (a
projection into Django tables) therefore processes every event exactly once,
whenever the process is killed; one with effects elsewhere (an email sent)
at least once, since a crash between its effect and the commit repeats the
page. A store that was reset (a new backendId) is consumed again from its
first event.
"""

from django.db import DEFAULT_DB_ALIAS, transaction

from .. import storage
from ..models import Store, TailCursor
from ..storage import placement

# Events per handler call.
PAGE_EVENTS = 500


class Tail:
    """One consumer's cursors over ``store_ids`` (None: every store, in every store database)."""

    def __init__(self, consumer, handler, store_ids=None, page_events=PAGE_EVENTS, progress=None):
        self.consumer = consumer
        self.handler = handler
        self.store_ids = store_ids
        self.page_events = page_events
        self.progress = progress
        self.consumed = 0
        cursors = TailCursor.objects.using(DEFAULT_DB_ALIAS).filter(consumer=consumer)
        if store_ids is not None:
            cursors = cursors.filter(store_id__in=store_ids)
        self._cursors = {cursor.store_id: cursor for cursor in cursors.iterator()}

    def round(self):
        """Consume every store's events up to its head as read now; the number of events consumed."""
        before = self.consumed
        for store_id, head, backend_id in self._heads():
            cursor = self._cursors.get(store_id)
            if cursor is None and head == 0:
                # Nothing to consume yet: no cursor row for each empty store.
                continue
            if cursor is None or cursor.backend_id != backend_id or cursor.seq_num < head:
                self._consume(store_id, backend_id)
        return self.consumed - before

    def _heads(self):
        """``(store_id, head, backend_id)`` of the stores followed, streamed database by database."""
        columns = ("store_id", "head", "backend_id")
        if self.store_ids is not None:
            by_database = {}
            for store_id, alias in placement.databases_of(self.store_ids).items():
                by_database.setdefault(alias, []).append(store_id)
            for alias, store_ids in by_database.items():
                yield from Store.objects.using(alias).filter(store_id__in=store_ids).values_list(*columns)
            return
        for alias in placement.store_databases():
            yield from Store.objects.using(alias).values_list(*columns).iterator(chunk_size=2000)

    def _consume(self, store_id, backend_id):
        cursor = self._cursors.get(store_id)
        if cursor is None:
            cursor, _ = TailCursor.objects.using(DEFAULT_DB_ALIAS).get_or_create(
                consumer=self.consumer, store_id=store_id
            )
            self._cursors[store_id] = cursor
        after = cursor.seq_num if cursor.backend_id == backend_id else 0
        while True:
            page = storage.read_page(store_id, after, self.page_events)
            if page.backend_id is None:
                return
            if page.backend_id != backend_id:
                # Reset while being consumed: the next round starts it again.
                return
            if not page.events:
                if after != cursor.seq_num or cursor.backend_id != backend_id:
                    self._save(cursor, after, backend_id)
                return
            with transaction.atomic(using=DEFAULT_DB_ALIAS):
                self.handler(store_id, page.events)
                self._save(cursor, page.events[-1].seq_num, backend_id)
            after = cursor.seq_num
            self.consumed += len(page.events)
            if self.progress is not None:
                self.progress(self.consumed)
            if page.remaining == 0:
                return

    def _save(self, cursor, seq_num, backend_id):
        cursor.seq_num, cursor.backend_id = seq_num, backend_id
        cursor.save(using=DEFAULT_DB_ALIAS, update_fields=["seq_num", "backend_id", "updated_at"])
