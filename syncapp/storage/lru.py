"""A thread-safe, size-bounded cache for what a process keeps per store.

A deployment's store count grows with its users, so nothing a process keeps
per store may grow with it: each such cache holds the ``maxsize`` stores used
last, and a store used again after its entry was dropped costs one lookup.
cachetools' ``LRUCache`` does the bookkeeping; it is not thread-safe, and the
database threads share these caches, hence the lock.
"""

import threading

from cachetools import LRUCache


class _EvictingLRU(LRUCache):
    def __init__(self, maxsize, on_evict):
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self):
        key, value = super().popitem()
        if self._on_evict is not None:
            self._on_evict(key, value)
        return key, value


class BoundedCache:
    """``get`` / ``put`` / ``pop`` on the ``maxsize`` entries used last.

    ``on_evict(key, value)`` runs for every entry the cache drops on its own
    (to make room, on ``clear``, when ``maxsize`` changes), not for ``pop``.

    ``maxsize`` may be a callable, asked at every use, so that a setting decides
    it and a changed setting (``override_settings``) takes effect at once.
    """

    def __init__(self, maxsize, on_evict=None):
        self._maxsize = maxsize if callable(maxsize) else (lambda: maxsize)
        self._on_evict = on_evict
        self._entries = None
        self._lock = threading.Lock()

    def _cache(self):
        size = self._maxsize()
        if self._entries is None:
            self._entries = _EvictingLRU(size, self._on_evict)
        elif size != self._entries.maxsize:
            self._drop_all()
            self._entries = _EvictingLRU(size, self._on_evict)
        return self._entries

    def _drop_all(self):
        entries, self._entries = self._entries, None
        if entries is not None and self._on_evict is not None:
            for key, value in list(entries.items()):
                self._on_evict(key, value)

    def get(self, key, default=None):
        with self._lock:
            return self._cache().get(key, default)

    def put(self, key, value):
        with self._lock:
            self._cache()[key] = value

    def pop(self, key, default=None):
        with self._lock:
            return self._cache().pop(key, default)

    def clear(self):
        with self._lock:
            self._drop_all()

    def __len__(self):
        with self._lock:
            return len(self._cache())

    def __contains__(self, key):
        with self._lock:
            return key in self._cache()
