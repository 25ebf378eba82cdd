import csv
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from dispatch import presence
from dispatch.models import DispatchPolicy
from dispatch.selectors import agents_quality, agents_with_load
from tickets.exceptions import Conflict

from .forms import AvailabilityInlineFormSet
from .models import Agent, AgentAvailability, AgentConnection, AgentLanguage, AgentSkill, Skill
from .payouts import PayoutPeriodForm, payouts_for
from .services import agent_approve, agent_set_status, agent_suspend
from .views import spreadsheet_safe


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


class LanguageFilter(admin.SimpleListFilter):
    title = "language"
    parameter_name = "language"

    def lookups(self, request, model_admin):
        codes = AgentLanguage.objects.order_by("code").values_list("code", flat=True).distinct()
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(languages__code=self.value()).distinct()


class AgentChangeList(ChangeList):
    """The agents of one page, with what the columns need read for all of them at once:
    routing's quality estimate and the live connections."""

    def get_results(self, request) -> None:
        super().get_results(request)
        agents = list(self.result_list)
        ids = [agent.pk for agent in agents]
        now, policy = timezone.now(), DispatchPolicy.load()
        quality = agents_quality(agent_ids=ids, policy=policy)
        fresh_since = now - timedelta(seconds=policy.heartbeat_timeout_seconds)
        connections = dict(
            AgentConnection.objects.filter(agent__in=ids, last_heartbeat_at__gte=fresh_since)
            .order_by()
            .values("agent")
            .annotate(n=Count("pk"))
            .values_list("agent", "n")
        )
        for agent in agents:
            agent.quality = quality[agent.pk]
            agent.live_connections = connections.get(agent.pk, 0)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "user",
        "account_state",
        "live_status",
        "load_of_capacity",
        "quality",
        "pay_rate",
        "language_list",
        "skill_list",
        "last_seen_at",
    ]
    list_filter = ["status", "account_state", LanguageFilter, "skills"]
    list_select_related = ["user"]
    search_fields = ["display_name", "user__username", "user__email"]
    readonly_fields = ["last_seen_at", "idle_since", "created_at"]
    inlines = [AgentLanguageInline, AgentSkillInline, AgentAvailabilityInline]
    actions = ["approve", "suspend", "set_offline"]

    def get_queryset(self, request):
        # `load` as routing counts it: assigned tickets plus pending offers.
        return agents_with_load().prefetch_related("languages", "agent_skills__skill")

    def get_changelist(self, request, **kwargs):
        return AgentChangeList

    @admin.display(description="Live status")
    def live_status(self, agent: Agent) -> str:
        connections = agent.live_connections
        if connections == 0:
            return f"{agent.status}, not connected"
        return f"{agent.status}, {connections} connection{'s' if connections > 1 else ''}"

    @admin.display(description="Load", ordering="load")
    def load_of_capacity(self, agent: Agent) -> str:
        return f"{agent.load}/{agent.capacity}"

    @admin.display(description="Quality (CSAT)")
    def quality(self, agent: Agent) -> str:
        ratings = agent.quality.ratings
        return f"{agent.quality.csat:.2f} ({ratings} rating{'' if ratings == 1 else 's'})"

    @admin.display(description="Languages")
    def language_list(self, agent: Agent) -> str:
        return (
            ", ".join(
                language.code if language.is_primary else f"{language.code} (secondary)"
                for language in agent.languages.all()
            )
            or self.get_empty_value_display()
        )

    @admin.display(description="Skills")
    def skill_list(self, agent: Agent) -> str:
        return (
            ", ".join(
                f"{agent_skill.skill.slug} ({agent_skill.proficiency})"
                for agent_skill in sorted(agent.agent_skills.all(), key=lambda s: s.skill.slug)
            )
            or self.get_empty_value_display()
        )

    def save_model(self, request, obj, form, change) -> None:
        changed = form.changed_data if change else []
        if "status" not in changed and "account_state" not in changed:
            super().save_model(request, obj, form, change)
            return
        # A coordinator's status change or suspension goes through the services, so the
        # agent's open tabs and the board hear of it, availability drains the queue, and a
        # suspended agent's work goes to others.
        status, account_state = obj.status, obj.account_state
        obj.status = form.initial["status"]
        if account_state == Agent.AccountState.SUSPENDED:
            obj.account_state = form.initial["account_state"]
        super().save_model(request, obj, form, change)
        if obj.status != status:
            agent_set_status(agent=obj, status=status)
        if obj.account_state != account_state:
            agent_suspend(agent=obj, by=request.user)

    def _act_on_each(self, request, queryset, act, done: str) -> None:
        """Run one service per selected agent; each agent's refusal is reported on its own,
        each change is written to the admin's log (the agent's History)."""
        names = []
        for agent in queryset.order_by("display_name", "pk"):
            try:
                act(agent)
            except Conflict as refusal:
                self.message_user(request, str(refusal), messages.ERROR)
            else:
                self.log_change(request, agent, done)
                names.append(agent.display_name)
        if names:
            self.message_user(request, f"{done}: {', '.join(names)}.")

    @admin.action(description="Approve the selected applicants", permissions=["change"])
    def approve(self, request, queryset) -> None:
        self._act_on_each(request, queryset, lambda agent: agent_approve(agent=agent), "Approved")

    @admin.action(
        description="Suspend (their offers and tickets go to others, their sockets close)",
        permissions=["change"],
    )
    def suspend(self, request, queryset) -> None:
        self._act_on_each(
            request,
            queryset,
            lambda agent: agent_suspend(agent=agent, by=request.user),
            "Suspended",
        )

    @admin.action(
        description="Set offline (their pending offers go to others)", permissions=["change"]
    )
    def set_offline(self, request, queryset) -> None:
        self._act_on_each(
            request,
            queryset,
            lambda agent: presence.agent_set_offline(agent=agent, by=request.user),
            "Set offline",
        )

    # -- payouts ------------------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "payouts/",
                self.admin_site.admin_view(self.payouts_view),
                name="agents_agent_payouts",
            ),
            path(
                "payouts.csv",
                self.admin_site.admin_view(self.payouts_csv_view),
                name="agents_agent_payouts_csv",
            ),
            *super().get_urls(),
        ]

    def _payouts_form(self, request) -> PayoutPeriodForm:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return PayoutPeriodForm(request.GET)

    def payouts_view(self, request):
        form = self._payouts_form(request)
        valid = form.is_valid()
        context = {
            **self.admin_site.each_context(request),
            "title": "Payouts",
            "opts": self.opts,
            "form": form,
            "payouts": payouts_for(**form.period()) if valid else None,
            "query": request.GET.urlencode(),
        }
        return TemplateResponse(
            request, "admin/agents/payouts.html", context, status=200 if valid else 400
        )

    def payouts_csv_view(self, request):
        form = self._payouts_form(request)
        if not form.is_valid():
            errors = " ".join(problem for problems in form.errors.values() for problem in problems)
            return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
        payouts = payouts_for(**form.period())
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="payouts-{payouts.start}-{payouts.end}.csv"'
        )
        writer = csv.writer(response)
        writer.writerow(
            [
                "period_start",
                "period_end",
                "iso_week",
                "agent",
                "username",
                "resolved",
                "handled_minutes",
                "pay_rate",
                "amount",
            ]
        )
        for row in payouts.rows:
            writer.writerow(
                [
                    row.start,
                    row.end,
                    row.iso_week,
                    spreadsheet_safe(row.agent.display_name),
                    spreadsheet_safe(row.agent.user.get_username()),
                    row.resolved,
                    row.handled_minutes,
                    row.agent.pay_rate,
                    row.amount,
                ]
            )
        return response


@admin.register(AgentConnection)
class AgentConnectionAdmin(admin.ModelAdmin):
    list_display = ["agent", "channel_name", "connected_at", "last_heartbeat_at"]
    readonly_fields = ["agent", "channel_name", "connected_at", "last_heartbeat_at"]
