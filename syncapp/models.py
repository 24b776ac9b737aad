"""The store registry. Each store's events live in a table of their own (see ``storage``)."""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# nanoid's alphabet and length, as the reference generates its backendIds.
BACKEND_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
BACKEND_ID_LENGTH = 21


def new_backend_id():
    """A fresh random backendId: one per incarnation of a store's log."""
    return "".join(secrets.choice(BACKEND_ID_ALPHABET) for _ in range(BACKEND_ID_LENGTH))


class Store(models.Model):
    """One LiveStore ``storeId``: the name of its eventlog table, its head and its backendId.

    ``head`` is the seqNum of the store's last event (0 for an empty store). It is
    moved in the same transaction that inserts the events, under a lock on this
    row, which is what serializes pushes to one store across processes.

    ``backend_id`` names this incarnation of the log for 0.4 clients: it is
    replaced when the store is reset, which makes those clients drop their local
    copy instead of pushing onto a history that no longer exists.

    ``last_v03_client_at`` / ``last_v04_client_at`` record when a client of each
    protocol generation last connected (updated at most once a minute per process).
    """

    store_id = models.CharField("storeId", max_length=255, unique=True)
    table_name = models.CharField(max_length=255, unique=True)
    head = models.BigIntegerField(default=0)
    backend_id = models.CharField("backendId", max_length=64, default=new_backend_id)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_v03_client_at = models.DateTimeField("last 0.3 client", null=True, blank=True)
    last_v04_client_at = models.DateTimeField("last 0.4 client", null=True, blank=True)

    class Meta:
        # No index on updated_at: every push sets it, and on PostgreSQL an indexed column turns each push's
        # update of this row from an in-place (HOT) update into new entries in every index of the table.
        ordering = ["-updated_at"]

    def __str__(self):
        return self.store_id


class StoreAccess(models.Model):
    """Who may sync which stores (checked by ``syncapp.access.user_access``): a user or a group, a storeId
    or a prefix ending in ``*``, and whether they may write or only read."""

    READ = "read"
    WRITE = "write"

    pattern = models.CharField(
        "storeId or prefix", max_length=255, db_index=True, help_text="An exact storeId, or a prefix ending in *."
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE)
    access = models.CharField(max_length=5, choices=[(READ, "read"), (WRITE, "read and write")], default=WRITE)

    class Meta:
        verbose_name = "store access"
        verbose_name_plural = "store access"
        ordering = ["pattern"]

    def __str__(self):
        return f"{self.user or self.group}: {self.access} {self.pattern}"

    def clean(self):
        if (self.user_id is None) == (self.group_id is None):
            raise ValidationError("Choose either a user or a group.")

    def matches(self, store_id):
        if self.pattern.endswith("*"):
            return store_id.startswith(self.pattern[:-1])
        return store_id == self.pattern


class StorePlacement(models.Model):
    """Which of ``LIVESYNC["STORE_DATABASES"]`` holds a store; kept in the default database.

    Recorded when the store is created, so a store stays where it is when
    databases are added. Its id is also the store's ``Store`` id in that
    database: ids are then unique across databases, and an admin URL names
    one store whichever database holds it.
    """

    store_id = models.CharField("storeId", max_length=255, unique=True)
    database = models.CharField(max_length=100)

    class Meta:
        verbose_name = "store placement"

    def __str__(self):
        return f"{self.store_id} in {self.database}"


class TailCursor(models.Model):
    """How far a named consumer (``manage.py livesync_tail NAME``) has processed one store's log.

    Kept in the default database, so that a consumer whose handler writes
    there moves its cursor in the same transaction as its own writes: a
    crash then never processes an event twice, nor skips one. ``backend_id``
    is the store's incarnation the cursor belongs to: after a reset the log
    starts again from 0, and so does the cursor.
    """

    consumer = models.CharField(max_length=255)
    store_id = models.CharField("storeId", max_length=255)
    seq_num = models.BigIntegerField(default=0)
    backend_id = models.CharField("backendId", max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer", "store_id"], name="syncapp_tail_cursor_unique")]

    def __str__(self):
        return f"{self.consumer}: {self.store_id} at e{self.seq_num}"
