"""Stores in the Django admin: the registry, each store's events (read-only), and reset, export and delete.

With stores spread over several databases the list shows one database at a
time (a filter picks it): a page across databases would have to merge every
database's ordering. A storeId search with no database chosen is the
exception: it asks every database for its first page of matches, and shows
them together with the database of each. A store's page is found wherever it
lives, since store ids are unique across databases (``syncapp.storage.placement``).

Everything goes through ``storage``; a reset or a delete is announced with
``broadcast.announce_reset`` so the store's sockets, in every server process,
reconnect instead of holding a history that no longer exists.

The list is ``store_list``, a store's page and its actions ``stores``, access rows ``access``.
"""

from .access import StoreAccessAdmin
from .stores import ARGS_SHOWN_CHARS, StoreAdmin

__all__ = ["ARGS_SHOWN_CHARS", "StoreAccessAdmin", "StoreAdmin"]
