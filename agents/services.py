"""Every write on the freelance pool: agents and their status (presence, computed from their
connections, is dispatch.presence)."""

import uuid
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from dispatch import services as dispatch_services
from tickets.exceptions import Conflict

from .events import agent_status_board_frame, status_frame
from .locks import lock_agent
from .models import Agent, AgentLanguage, AgentSkill, Skill
from .push import close_agent_sockets_on_commit, push_to_agent_on_commit, push_to_board_on_commit


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


# Why a suspended agent's tickets were taken back, in their audit events.
SUSPENDED_NOTE = "The agent was suspended."


class AgentNotApplicant(Conflict):
    def __init__(self, agent: Agent) -> None:
        super().__init__(f"{agent} is {agent.account_state}: only an applicant can be approved.")


class AgentAlreadySuspended(Conflict):
    def __init__(self, agent: Agent) -> None:
        super().__init__(f"{agent} is suspended already.")


@transaction.atomic
def agent_approve(*, agent: Agent) -> Agent:
    """An applicant becomes an active agent: it may log in to the portal and take work."""
    agent = lock_agent(agent.pk)
    if agent.account_state != Agent.AccountState.APPLICANT:
        raise AgentNotApplicant(agent)
    agent.account_state = Agent.AccountState.ACTIVE
    agent.save(update_fields=["account_state"])
    return agent


def agent_suspend(*, agent: Agent, by: AbstractBaseUser) -> Agent:
    """Suspend an agent: it goes offline, every ticket it holds (pending offers and assigned
    tickets) is taken back and routed to others, and its open sockets are closed with 4403.

    The work is taken back once the suspension has committed: from then on no routing step
    gives the agent more (each re-checks the agent under its lock), so each ticket can be
    taken back in a transaction of its own, in the canonical lock order (ticket, offer,
    agent), never while this agent's row is locked. Should that fail, presence still frees
    the work: the offers expire and the tickets are requeued after the reconnect window.
    """
    with transaction.atomic():
        agent = lock_agent(agent.pk)
        if agent.account_state == Agent.AccountState.SUSPENDED:
            raise AgentAlreadySuspended(agent)
        agent.account_state = Agent.AccountState.SUSPENDED
        agent.save(update_fields=["account_state"])
        agent = agent_set_status(agent=agent, status=Agent.Status.OFFLINE)
        transaction.on_commit(lambda: _agent_give_up_work(agent_id=agent.pk, by=by))
    return agent


def _agent_give_up_work(*, agent_id: uuid.UUID, by: AbstractBaseUser) -> None:
    dispatch_services.agent_take_back_work(agent_id=agent_id, by=by, note=SUSPENDED_NOTE)
    # Last, so that the agent's tabs hear what was taken from them before they close.
    close_agent_sockets_on_commit(agent_id)
