from django.contrib import admin

from .models import Agent, AgentConnection, AgentLanguage, AgentSkill, Skill


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
    inlines = [AgentLanguageInline, AgentSkillInline]


@admin.register(AgentConnection)
class AgentConnectionAdmin(admin.ModelAdmin):
    list_display = ["agent", "channel_name", "connected_at", "last_heartbeat_at"]
    readonly_fields = ["agent", "channel_name", "connected_at", "last_heartbeat_at"]
