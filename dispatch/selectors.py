from datetime import datetime, timedelta

from django.db.models import Count, Exists, F, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from agents.models import Agent, AgentConnection, AgentLanguage, AgentSkill, Skill
from tickets.models import Ticket

from .models import DispatchPolicy, Offer


def _count(queryset: QuerySet) -> Subquery:
    return Coalesce(
        Subquery(
            queryset.order_by().values("agent").annotate(n=Count("pk")).values("n"),
            output_field=IntegerField(),
        ),
        0,
    )


def agents_with_load() -> QuerySet[Agent]:
    """Agents annotated with `load`: assigned tickets plus pending offers."""
    return Agent.objects.annotate(
        load=_count(Ticket.objects.filter(agent=OuterRef("pk"), status=Ticket.Status.ASSIGNED))
        + _count(Offer.objects.filter(agent=OuterRef("pk"), status=Offer.Status.PENDING))
    )


def agent_load(*, agent: Agent) -> int:
    return (
        Ticket.objects.filter(agent=agent, status=Ticket.Status.ASSIGNED).count()
        + Offer.objects.filter(agent=agent, status=Offer.Status.PENDING).count()
    )


def agent_is_connected(*, agent: Agent, now: datetime, policy: DispatchPolicy) -> bool:
    fresh_since = now - timedelta(seconds=policy.heartbeat_timeout_seconds)
    return agent.connections.filter(last_heartbeat_at__gte=fresh_since).exists()


def agents_routable(*, now: datetime, policy: DispatchPolicy) -> QuerySet[Agent]:
    """Active, available, connected agents under capacity."""
    fresh_since = now - timedelta(seconds=policy.heartbeat_timeout_seconds)
    return (
        agents_with_load()
        .filter(account_state=Agent.AccountState.ACTIVE, status=Agent.Status.AVAILABLE)
        .filter(
            Exists(
                AgentConnection.objects.filter(
                    agent=OuterRef("pk"), last_heartbeat_at__gte=fresh_since
                )
            )
        )
        .filter(load__lt=F("capacity"))
    )


def _offered_before(*, ticket=None, agent=None) -> Exists:
    """Whether this agent had this ticket before; the side not given is the outer row."""
    # A revoked offer (the agent went offline, a coordinator moved it) is not the agent's
    # choice; a declined, missed or released one is, and the ticket never returns to them.
    return Exists(
        Offer.objects.filter(
            ticket=ticket or OuterRef("pk"), agent=agent or OuterRef("pk")
        ).exclude(status=Offer.Status.REVOKED)
    )


def agents_eligible_for(
    *, ticket: Ticket, now: datetime, policy: DispatchPolicy
) -> QuerySet[Agent]:
    """Routable agents who can take this ticket, best first (longest idle first)."""
    agents = agents_routable(now=now, policy=policy).filter(
        Exists(AgentLanguage.objects.filter(agent=OuterRef("pk"), code=ticket.language))
    )
    for skill_id in ticket.skills.values_list("pk", flat=True):
        agents = agents.filter(
            Exists(AgentSkill.objects.filter(agent=OuterRef("pk"), skill_id=skill_id))
        )
    return agents.exclude(_offered_before(ticket=ticket)).order_by(
        F("idle_since").asc(nulls_first=True), "created_at"
    )


def tickets_waiting_for(*, agent: Agent) -> QuerySet[Ticket]:
    """Queued tickets this agent can take, in dispatch order."""
    return (
        Ticket.objects.filter(status=Ticket.Status.QUEUED, language__in=agent.language_codes)
        .exclude(skills__in=Skill.objects.exclude(agent_skills__agent=agent))
        .exclude(_offered_before(agent=agent))
        .order_by("-priority", "created_at", "id")
    )


def agent_pending_offers(*, agent: Agent) -> list[Offer]:
    return list(
        Offer.objects.filter(agent=agent, status=Offer.Status.PENDING)
        .select_related("ticket")
        .prefetch_related("ticket__skills", "ticket__messages")
        .order_by("created_at")
    )


def agent_assigned_tickets(*, agent: Agent) -> list[Ticket]:
    return list(
        Ticket.objects.filter(agent=agent, status=Ticket.Status.ASSIGNED)
        .select_related("agent")
        .prefetch_related("skills")
        .order_by("assigned_at")
    )
