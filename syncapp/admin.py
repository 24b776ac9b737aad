from django.contrib import admin

from .models import Store


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ("store_id", "table_name", "head", "created_at", "updated_at")
    search_fields = ("store_id",)
    readonly_fields = ("store_id", "table_name", "head", "created_at", "updated_at")

    def has_add_permission(self, request):
        # Stores come into being with their first push, never by hand.
        return False
