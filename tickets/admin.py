from django.contrib import admin

from .models import BotIntegration, Message, Ticket, TicketEvent, WebhookAttempt, WebhookDelivery


@admin.register(BotIntegration)
class BotIntegrationAdmin(admin.ModelAdmin):
    list_display = ["name", "key_prefix", "is_active", "created_at", "revoked_at"]
    readonly_fields = ["key_prefix", "created_at"]
    exclude = ["key_hash"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["position", "role", "text", "sent_at"]
    readonly_fields = fields


class TicketEventInline(admin.TabularInline):
    model = TicketEvent
    extra = 0
    fields = ["occurred_at", "kind", "from_status", "to_status", "agent", "actor", "detail"]
    readonly_fields = fields


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = [
        "external_id",
        "integration",
        "status",
        "priority",
        "language",
        "agent",
        "created_at",
    ]
    list_filter = ["status", "priority", "language"]
    search_fields = ["external_id", "customer_id", "customer_name"]
    readonly_fields = ["message_count", "webhook_sequence", "created_at"]
    inlines = [MessageInline, TicketEventInline]


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    fields = ["attempted_at", "status_code", "error", "duration_ms"]
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "ticket",
        "event",
        "sequence",
        "state",
        "attempt_count",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["state", "event"]
    readonly_fields = [
        "ticket",
        "event",
        "sequence",
        "url",
        "body",
        "attempt_count",
        "created_at",
        "delivered_at",
    ]
    inlines = [WebhookAttemptInline]
