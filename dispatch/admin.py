from django.contrib import admin

from .models import DispatchPolicy, Offer


@admin.register(DispatchPolicy)
class DispatchPolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "offer_timeout_seconds", "heartbeat_timeout_seconds", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return not DispatchPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = ["ticket", "agent", "status", "created_at", "expires_at", "responded_at"]
    list_filter = ["status"]
    readonly_fields = ["ticket", "agent", "created_at", "expires_at", "responded_at", "released_at"]
