"""Public: per-store access for the session's user, managed in the Django admin (``StoreAccess``).

``LIVESYNC["VALIDATE_PAYLOAD"] = "syncapp.access.user_access"``: a browser app on the project's own site needs
nothing but the user's login. Superusers may sync every store; others the stores a ``StoreAccess`` row gives
them or one of their groups, read-only where no row lets them write.

Open sockets follow the rows: deleting or narrowing a row, deactivating a user, changing their password or
logging them out reaches their open sockets within a second (``syncapp.server.revocation``).
"""

from django.db.models import Q

from .context import READ_ONLY, SyncContext
from .models import StoreAccess
from .server import revocation  # noqa: F401  (its signal receivers tell open sockets when access changes)


def user_access(payload: object, context: SyncContext) -> str | None:
    """Accept the session user for the stores they may sync (read-only where they may only read); else raise."""
    user = context.user
    if not user.is_authenticated or not user.is_active:
        raise PermissionError("log in to sync this store")
    if user.is_superuser:
        return None
    rules = StoreAccess.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
    granted = {rule.access for rule in rules if rule.matches(context.store_id)}
    if StoreAccess.WRITE in granted:
        return None
    if StoreAccess.READ in granted:
        return READ_ONLY
    raise PermissionError(f"{user.get_username()} may not sync store {context.store_id!r}")
