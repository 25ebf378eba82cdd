"""Every write on the freelance pool: agents, their status and their presence."""

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from dispatch import services as dispatch_services

from .events import status_frame
from .locks import lock_agent
from .models import Agent, AgentConnection, AgentLanguage, AgentSkill, Skill
from .push import push_to_agent_on_commit


@transaction.atomic
def agent_create(
    *,
    username: str,
    password: str,
    languages: list[str],
    skills: list[str] = (),
    capacity: int = 2,
    display_name: str = "",
    pay_rate: Decimal = Decimal("0.00"),
) -> Agent:
    """Create an active freelance agent; skills that do not exist yet are created."""
    user = get_user_model().objects.create_user(username=username, password=password)
    agent = Agent.objects.create(
        user=user,
        display_name=display_name or username,
        capacity=capacity,
        pay_rate=pay_rate,
        account_state=Agent.AccountState.ACTIVE,
    )
    # A repeated language or skill ("sv,SV", "refunds,Refunds") is taken once: rows are unique.
    AgentLanguage.objects.bulk_create(
        AgentLanguage(agent=agent, code=code)
        for code in dict.fromkeys(code.lower() for code in languages)
    )
    for slug in dict.fromkeys(slugify(name) for name in skills):
        skill, _ = Skill.objects.get_or_create(
            slug=slug, defaults={"name": slug.replace("-", " ").capitalize()}
        )
        AgentSkill.objects.create(agent=agent, skill=skill)
    return agent


@transaction.atomic
def agent_set_status(*, agent: Agent, status: str) -> Agent:
    """Change an agent's status; every open tab hears of it, and availability drains the queue."""
    agent = lock_agent(agent.pk)
    if agent.status == status:
        return agent
    agent.status = status
    fields = ["status"]
    if status == Agent.Status.AVAILABLE:
        agent.idle_since = timezone.now()
        fields.append("idle_since")
        dispatch_services.agent_request_drain(agent=agent)
    agent.save(update_fields=fields)
    push_to_agent_on_commit(agent.pk, status_frame(agent))
    return agent


@transaction.atomic
def agent_connect(*, agent: Agent, channel_name: str) -> AgentConnection:
    """Record an open socket; an available agent coming back is offered waiting work."""
    now = timezone.now()
    connection = AgentConnection.objects.create(
        agent=agent, channel_name=channel_name, last_heartbeat_at=now
    )
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=now)
    if agent.status == Agent.Status.AVAILABLE:
        dispatch_services.agent_request_drain(agent=agent)
    return connection


def agent_heartbeat(*, agent: Agent, channel_name: str) -> None:
    now = timezone.now()
    AgentConnection.objects.filter(channel_name=channel_name).update(last_heartbeat_at=now)
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=now)


def agent_disconnect(*, channel_name: str) -> None:
    AgentConnection.objects.filter(channel_name=channel_name).delete()
