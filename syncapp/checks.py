"""System checks for a misconfigured ``LIVESYNC`` setting."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from . import conf


@register(Tags.compatibility)
def check_settings(app_configs, **kwargs):
    errors = []
    user = getattr(settings, "LIVESYNC", {}) or {}
    for name in sorted(set(user) - set(conf.DEFAULTS)):
        errors.append(
            Error(f"LIVESYNC[{name!r}] is not a livesync setting.", hint="See syncapp/conf.py.", id="syncapp.E001")
        )
    for name in conf.HOOK_SETTINGS:
        value = conf.get(name)
        if value is None or callable(value):
            continue
        try:
            target = import_string(value)
        except ImportError as exc:
            errors.append(Error(f"LIVESYNC[{name!r}] cannot be imported: {exc}", obj=value, id="syncapp.E002"))
            continue
        if not callable(target):
            errors.append(Error(f"LIVESYNC[{name!r}] is not callable.", obj=value, id="syncapp.E003"))
    for name in ("PULL_CHUNK_SIZE", "MAX_MESSAGE_BYTES", "MAX_STORE_ID_LENGTH", "DATABASE_THREADS"):
        value = conf.get(name)
        if not isinstance(value, int) or value < 1:
            errors.append(Error(f"LIVESYNC[{name!r}] must be a positive integer.", obj=value, id="syncapp.E004"))
    if conf.get("MAX_STORE_ID_LENGTH") > 255:
        errors.append(
            Error("LIVESYNC['MAX_STORE_ID_LENGTH'] cannot exceed 255 (the Store.store_id column).", id="syncapp.E005")
        )
    if not settings.DEBUG:
        if conf.get("VALIDATE_PAYLOAD") is None:
            errors.append(
                Warning(
                    "LIVESYNC['VALIDATE_PAYLOAD'] is not set: any client can read and write every store.",
                    hint="Set an import string of a callable(payload, context) that raises to reject.",
                    id="syncapp.W001",
                )
            )
        if conf.get("ADMIN_SECRET") == conf.DEFAULT_ADMIN_SECRET:
            errors.append(
                Warning(
                    "LIVESYNC['ADMIN_SECRET'] is the default: anyone can reset stores with admin frames.",
                    hint="Set a secret of your own (the example project reads LIVESYNC_ADMIN_SECRET).",
                    id="syncapp.W002",
                )
            )
    return errors
