"""The store registry. Each store's events live in a table of their own (see ``storage``)."""

from django.db import models


class Store(models.Model):
    """One LiveStore ``storeId``: the name of its eventlog table and its head.

    ``head`` is the seqNum of the store's last event (0 for an empty store). It is
    moved in the same transaction that inserts the events, under a lock on this
    row, which is what serializes pushes to one store across processes.
    """

    store_id = models.CharField("storeId", max_length=255, unique=True)
    table_name = models.CharField(max_length=255, unique=True)
    head = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self):
        return self.store_id
