from django.apps import AppConfig


class SyncAppConfig(AppConfig):
    name = "syncapp"
    verbose_name = "LiveStore sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from . import daphne_compat

        daphne_compat.install()
