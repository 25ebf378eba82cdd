from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from agents.models import Agent
from agents.views import duration_text
from dispatch import services as dispatch_services
from dispatch.models import DispatchPolicy
from dispatch.selectors import sla_target_seconds

from .exceptions import Conflict
from .models import BotIntegration, Message, Ticket, TicketEvent, WebhookAttempt, WebhookDelivery
from .services import bot_integration_revoke, bot_integration_rotate_key, ticket_cancel
from .validators import validate_callback_url
from .webhooks import webhook_retry_now


@admin.register(BotIntegration)
class BotIntegrationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "key_prefix",
        "is_active",
        "requests_per_minute",
        "created_at",
        "revoked_at",
    ]
    list_filter = ["is_active"]
    readonly_fields = ["key_prefix", "created_at", "revoked_at"]
    exclude = ["key_hash"]
    actions = ["rotate_key", "revoke"]

    def get_changeform_initial_data(self, request) -> dict:
        return {"signing_secret": BotIntegration.new_signing_secret()}

    def get_exclude(self, request, obj=None) -> list[str]:
        # The signing secret lets whoever holds it sign webhooks the bot will trust: shown only
        # to those who may change the integration, not to those who may only view it.
        if obj is not None and not self.has_change_permission(request, obj):
            return [*self.exclude, "signing_secret"]
        return self.exclude

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            # The key exists only in this response: the database keeps its hash.
            key = obj.set_key()
            self.message_user(
                request,
                f"The API key of {obj.name}, shown only this once: {key}",
                messages.WARNING,
            )
        super().save_model(request, obj, form, change)

    @admin.action(
        description="Revoke the API key of the selected integrations", permissions=["change"]
    )
    def revoke(self, request, queryset) -> None:
        revoked = 0
        for integration in queryset.order_by("name", "pk"):
            if bot_integration_revoke(integration_id=integration.pk):
                self.log_change(request, integration, "Revoked the API key.")
                revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).")

    @admin.action(
        description="Rotate the API key of the selected integrations (the old key stops working)",
        permissions=["change"],
    )
    def rotate_key(self, request, queryset) -> None:
        for integration_id in queryset.order_by("name", "pk").values_list("pk", flat=True):
            try:
                integration, key = bot_integration_rotate_key(integration_id=integration_id)
            except Conflict as refusal:
                self.message_user(request, str(refusal), messages.ERROR)
                continue
            self.log_change(request, integration, "Rotated the API key.")
            # The key exists only in this response: the database keeps its hash.
            self.message_user(
                request,
                f"The new API key of {integration.name}, shown only this once: {key}",
                messages.WARNING,
            )


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

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("agent", "actor")


# As long as an agent's own reason for declining or releasing a ticket may be.
REASON_MAX_LENGTH = 500


class HandOverForm(helpers.ActionForm):
    """Beside the action menu: the agent a coordinator offers or assigns tickets to, and why a
    coordinator requeues them."""

    agent = forms.ModelChoiceField(
        queryset=Agent.objects.filter(account_state=Agent.AccountState.ACTIVE),
        required=False,
        label="Agent:",
    )
    allow_over_capacity = forms.BooleanField(required=False, label="even over capacity")
    # Its length is checked by the action, which can say what is wrong: the admin answers an
    # invalid action form with a bare "No action selected."
    reason = forms.CharField(required=False, label="Reason (to requeue):")


def sla_state(*, ticket: Ticket, policy: DispatchPolicy, now: datetime) -> str:
    """Whether the ticket reached an agent within its priority's first-assignment target."""
    target = timedelta(seconds=sla_target_seconds(policy=policy, priority=ticket.priority))
    if ticket.sla_breached:
        return "breached"
    if ticket.first_assigned_at is not None:
        return "met" if ticket.first_assigned_at - ticket.created_at <= target else "breached"
    if ticket.status == Ticket.Status.CANCELLED:
        return "cancelled while waiting"
    left = ticket.created_at + target - now
    return f"due in {duration_text(left)}" if left > timedelta(0) else "breached"


class TicketChangeList(ChangeList):
    """The tickets of one page, with how long each waited for an agent and its SLA state,
    measured against the dispatch policy read once for the page."""

    def get_results(self, request) -> None:
        super().get_results(request)
        policy = DispatchPolicy.load()
        now = timezone.now()
        for ticket in self.result_list:
            waited_until = ticket.first_assigned_at or ticket.cancelled_at or now
            ticket.waited = waited_until - ticket.created_at
            ticket.sla_state = sla_state(ticket=ticket, policy=policy, now=now)


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = [
        "external_id",
        "integration",
        "status",
        "priority",
        "language",
        "waiting_time",
        "sla",
        "agent",
        "created_at",
    ]
    list_filter = [
        "status",
        "priority",
        "language",
        "sla_breached",
        ("agent", admin.RelatedOnlyFieldListFilter),
        "integration",
    ]
    list_select_related = ["integration", "agent"]
    search_fields = ["external_id", "customer_id", "customer_name", "agent__display_name"]
    # Who holds a ticket changes only through the services, which lock, keep the offers in
    # step and write the audit trail: by the actions below, never by editing the fields.
    readonly_fields = [
        "status",
        "agent",
        "offers",
        "sla_breached",
        "sla_breached_at",
        "assigned_at",
        "first_assigned_at",
        "message_count",
        "webhook_sequence",
        "created_at",
    ]
    inlines = [MessageInline, TicketEventInline]
    # Callback URLs are https (the contract allows plain http to loopback hosts only), and reach
    # public addresses only where production settings say so: the bot API's rules.
    formfield_overrides = {
        models.URLField: {"assume_scheme": "https", "validators": [validate_callback_url]}
    }
    action_form = HandOverForm
    actions = ["offer_to_agent", "assign_to_agent", "requeue", "cancel"]

    def get_changelist(self, request, **kwargs):
        return TicketChangeList

    @admin.display(description="Waited for an agent")
    def waiting_time(self, ticket: Ticket) -> str:
        return duration_text(ticket.waited)

    @admin.display(description="SLA", ordering="sla_breached")
    def sla(self, ticket: Ticket) -> str:
        return ticket.sla_state

    @admin.display(description="Offers")
    def offers(self, ticket: Ticket) -> str:
        if ticket.pk is None:
            return "-"
        url = reverse("admin:dispatch_offer_changelist")
        return format_html('<a href="{}?ticket={}">Offers, with why each agent</a>', url, ticket.pk)

    @admin.action(description="Offer to the chosen agent", permissions=["change"])
    def offer_to_agent(self, request, queryset) -> None:
        self._hand_over(request, queryset, dispatch_services.ticket_offer_to, "Offered")

    @admin.action(description="Assign to the chosen agent", permissions=["change"])
    def assign_to_agent(self, request, queryset) -> None:
        self._hand_over(request, queryset, dispatch_services.ticket_assign_to, "Assigned")

    def _hand_over(self, request, queryset, service, done_verb: str) -> None:
        form = self.action_form(request.POST)
        # As the admin's own action handling does, so that the form validates as a whole.
        form.fields["action"].choices = self.get_action_choices(request)
        agent = form.cleaned_data["agent"] if form.is_valid() else None
        if agent is None:
            self.message_user(request, "Choose the agent first.", messages.ERROR)
            return
        self._each_ticket(
            request,
            queryset,
            lambda ticket: service(
                ticket_id=ticket.pk,
                agent_id=agent.pk,
                by=request.user,
                allow_over_capacity=form.cleaned_data["allow_over_capacity"],
            ),
            f"{done_verb} to {agent}",
        )

    @admin.action(
        description="Requeue: take back from the agent and route again", permissions=["change"]
    )
    def requeue(self, request, queryset) -> None:
        form = self.action_form(request.POST)
        form.fields["action"].choices = self.get_action_choices(request)
        reason = form.cleaned_data["reason"].strip() if form.is_valid() else ""
        if not reason or len(reason) > REASON_MAX_LENGTH:
            self.message_user(
                request,
                f"Give the reason first (at most {REASON_MAX_LENGTH} characters).",
                messages.ERROR,
            )
            return
        self._each_ticket(
            request,
            queryset,
            lambda ticket: dispatch_services.ticket_requeue(
                ticket_id=ticket.pk, by=request.user, note=reason
            ),
            "Requeued",
        )

    @admin.action(description="Cancel (the bot is told)", permissions=["change"])
    def cancel(self, request, queryset) -> None:
        def cancel_one(ticket: Ticket) -> None:
            if ticket.status == Ticket.Status.CANCELLED:
                raise Conflict("The ticket is cancelled already.")
            ticket_cancel(ticket_id=ticket.pk, actor=request.user)

        self._each_ticket(request, queryset, cancel_one, "Cancelled")

    def _each_ticket(self, request, queryset, act, done_verb: str) -> None:
        done = []
        for ticket in queryset.order_by("created_at"):
            try:
                act(ticket)
            except Conflict as refusal:
                self.message_user(request, f"{ticket.external_id}: {refusal}", messages.ERROR)
            else:
                done.append(ticket.external_id)
        if done:
            self.message_user(request, f"{done_verb}: {', '.join(done)}.")


class WebhookAttemptInline(admin.TabularInline):
    """The record of every attempt: read-only, as a log is."""

    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["attempted_at", "status_code", "error", "duration_ms"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "ticket",
        "event",
        "sequence",
        "state",
        "attempt_count",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["state", "event"]
    list_select_related = ["ticket"]
    readonly_fields = [
        "ticket",
        "event",
        "sequence",
        "url",
        "body",
        "state",
        "attempt_count",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    inlines = [WebhookAttemptInline]
    actions = ["retry_now"]

    def has_add_permission(self, request) -> bool:
        # Deliveries are made by the events they report, never by hand.
        return False

    @admin.action(description="Retry now", permissions=["change"])
    def retry_now(self, request, queryset) -> None:
        retried = [
            delivery_id
            for delivery_id in queryset.exclude(state=WebhookDelivery.State.DELIVERED).values_list(
                "pk", flat=True
            )
            if webhook_retry_now(delivery_id=delivery_id) is not None
        ]
        self.message_user(request, f"Retrying {len(retried)} delivery(ies) now.")
