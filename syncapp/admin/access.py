"""Per-store access rows (``StoreAccess``) in the admin: which users and groups may sync which stores."""

from django.contrib import admin

from ..models import StoreAccess


@admin.register(StoreAccess)
class StoreAccessAdmin(admin.ModelAdmin):
    """Who may sync which stores, for ``syncapp.access.user_access``; managed with Django's model permissions."""

    list_display = ("pattern", "user", "group", "access")
    list_filter = ("access",)
    search_fields = ("pattern", "user__username", "group__name")
