from django.contrib import admin
from django.utils.html import format_html, format_html_join

from . import scoring
from .models import DispatchPolicy, Offer


@admin.register(DispatchPolicy)
class DispatchPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "offer_timeout_seconds",
        "weight_quality",
        "weight_proficiency",
        "weight_idle",
        "weight_load",
        "weight_cost",
        "updated_at",
    ]
    fieldsets = [
        (
            "Offers and presence",
            {
                "fields": [
                    "offer_timeout_seconds",
                    "max_consecutive_misses",
                    "heartbeat_timeout_seconds",
                    "offline_grace_seconds",
                    "reconnect_window_seconds",
                ]
            },
        ),
        (
            "Scoring weights",
            {
                "description": "Each eligible agent's score is the weighted sum of five parts, "
                "each from 0 to 1. Quality must weigh more than cost.",
                "fields": [
                    "weight_quality",
                    "weight_proficiency",
                    "weight_idle",
                    "weight_load",
                    "weight_cost",
                ],
            },
        ),
        ("Quality", {"fields": ["quality_window_days", "quality_prior_ratings"]}),
        (
            "Queue order and SLA",
            {
                "fields": [
                    "aging_seconds_per_priority",
                    "sla_urgent_seconds",
                    "sla_high_seconds",
                    "sla_normal_seconds",
                    "sla_low_seconds",
                ]
            },
        ),
        (
            "Eligibility and relaxation",
            {
                "description": "A waiting ticket relaxes in two steps: first any proficiency in "
                "its skills, later also agents who speak its language as a secondary language. "
                "Language and skills themselves are never waived.",
                "fields": [
                    "min_proficiency",
                    "relax_proficiency_after_seconds",
                    "relax_language_after_seconds",
                ],
            },
        ),
    ]

    def has_add_permission(self, request) -> bool:
        return not DispatchPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = [
        "ticket",
        "agent",
        "status",
        "score",
        "assigned_by",
        "created_at",
        "expires_at",
        "responded_at",
    ]
    list_filter = ["status"]
    list_select_related = ["ticket", "agent", "assigned_by"]
    search_fields = ["ticket__external_id", "agent__display_name"]
    fields = [
        "ticket",
        "agent",
        "status",
        "score",
        "why",
        "assigned_by",
        "created_at",
        "expires_at",
        "responded_at",
        "released_at",
        "decline_reason",
        "revoke_reason",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        # Offers are made by routing or by a coordinator's action on the ticket, never by hand.
        return False

    @admin.display(description="Why this agent")
    def why(self, offer: Offer) -> str:
        if offer.assigned_by_id is not None:
            return f"Chosen by {offer.assigned_by}."
        if not offer.score_parts:
            return "-"
        return format_html(
            "<table><tr><th>part</th><th>weighted</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td></tr>",
                (
                    (part, offer.score_parts[part])
                    for part in scoring.PARTS
                    if part in offer.score_parts
                ),
            ),
        )
