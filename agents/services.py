"""Every write on the freelance pool: agents and their status (presence, computed from their
connections, is dispatch.presence)."""

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from dispatch import services as dispatch_services

from .events import agent_status_board_frame, status_frame
from .locks import lock_agent
from .models import Agent, AgentLanguage, AgentSkill, Skill
from .push import push_to_agent_on_commit, push_to_board_on_commit


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
    """Change an agent's status; every open tab and the coordinators' board hear of it, and
    availability drains the queue.

    An unchanged status is confirmed to the agent's tabs all the same, so the tab that asked
    always gets its answer.
    """
    agent = lock_agent(agent.pk)
    if agent.status != status:
        agent.status = status
        fields = ["status"]
        if status == Agent.Status.AVAILABLE:
            agent.idle_since = timezone.now()
            fields.append("idle_since")
            dispatch_services.agent_request_drain(agent=agent)
        agent.save(update_fields=fields)
        push_to_board_on_commit(agent_status_board_frame(agent))
    push_to_agent_on_commit(agent.pk, status_frame(agent))
    return agent
