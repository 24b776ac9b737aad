from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SyncAppConfig(AppConfig):
    name = "syncapp"
    verbose_name = "LiveStore sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .server import (
            daphne_compat,
            revocation,  # noqa: F401  (tells open sockets, in every process, when a user's access changes)
        )

        daphne_compat.install()
        post_migrate.connect(_create_store_schema, sender=self)


def _create_store_schema(sender, using, plan=None, stdout=None, verbosity=1, **kwargs):
    """After ``migrate`` of a database that holds syncapp's tables, on PostgreSQL, the schema its stores'
    tables go in (``LIVESYNC["STORE_SCHEMA"]``), so that the host's own schema gets none of them; and a
    notice of the tables an earlier version left in the host's schema, with the command that moves them.

    Nothing else: spare tables are made when the database's first stores are.
    ``flush`` sends this signal too, without a plan, and a migration backwards
    has a plan of steps backwards: neither asks for a schema.
    """
    from django.db import router

    from . import storage
    from .models import Store

    if plan is None or any(backwards for _, backwards in plan) or not router.allow_migrate_model(using, Store):
        return
    if storage.create_store_schema(using) and verbosity >= 1 and stdout is not None:
        left = len(storage.tables_to_move(using))
        if left:
            stdout.write(
                f"  {left} livesync tables of database {using!r} are outside schema "
                f"{storage.store_schema(using)!r}: run manage.py livesync_move_tables --database={using} to move them."
            )
