from django.contrib import admin

from .forms import AvailabilityInlineFormSet
from .models import Agent, AgentAvailability, AgentConnection, AgentLanguage, AgentSkill, Skill
from .services import agent_set_status


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ["slug", "name"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}


class AgentLanguageInline(admin.TabularInline):
    model = AgentLanguage
    extra = 0


class AgentSkillInline(admin.TabularInline):
    model = AgentSkill
    extra = 0
    autocomplete_fields = ["skill"]


class AgentAvailabilityInline(admin.TabularInline):
    model = AgentAvailability
    formset = AvailabilityInlineFormSet
    extra = 0
    verbose_name = "weekly availability window (in the agent's time zone)"
    verbose_name_plural = "weekly availability (in the agent's time zone)"


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "user",
        "account_state",
        "status",
        "capacity",
        "pay_rate",
        "last_seen_at",
    ]
    list_filter = ["account_state", "status"]
    search_fields = ["display_name", "user__username"]
    readonly_fields = ["last_seen_at", "idle_since", "created_at"]
    inlines = [AgentLanguageInline, AgentSkillInline, AgentAvailabilityInline]

    def save_model(self, request, obj, form, change) -> None:
        if not change or "status" not in form.changed_data:
            super().save_model(request, obj, form, change)
            return
        # A coordinator's status change goes through the service, so the agent's open tabs
        # and the board hear of it and availability drains the queue.
        status = obj.status
        obj.status = form.initial["status"]
        super().save_model(request, obj, form, change)
        agent_set_status(agent=obj, status=status)


@admin.register(AgentConnection)
class AgentConnectionAdmin(admin.ModelAdmin):
    list_display = ["agent", "channel_name", "connected_at", "last_heartbeat_at"]
    readonly_fields = ["agent", "channel_name", "connected_at", "last_heartbeat_at"]
