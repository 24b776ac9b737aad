from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SyncAppConfig(AppConfig):
    name = "syncapp"
    verbose_name = "LiveStore sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            daphne_compat,
            revocation,  # noqa: F401  (tells open sockets, in every process, when a user's access changes)
        )

        daphne_compat.install()
        post_migrate.connect(_make_spare_tables, sender=self)


def _make_spare_tables(sender, using, plan=None, **kwargs):
    """After ``migrate`` of a store database, its spare tables (``syncapp.spares``): a fresh deployment's
    first new stores then rename them instead of creating tables on their pushes' path.

    ``flush`` sends this signal too, without a plan, and a migration backwards
    has a plan of steps backwards: neither asks for tables, so neither gets any.
    """
    from . import conf, storage

    if plan is None or any(backwards for _, backwards in plan):
        return
    if using in conf.store_databases():
        storage.make_spares(using)
