import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce

from agents.models import Agent, AgentConnection
from tickets.models import Ticket

from . import candidates, scoring
from .models import AgentRatings, DispatchPolicy, Offer


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
    """Assigned tickets plus pending offers, read in one statement.

    Two separate counts could straddle an accept that commits between them (the offer leaves
    the pending count before the ticket enters the assigned one) and undercount by one, which
    let a racing router exceed the agent's capacity.
    """
    return agents_with_load().values_list("load", flat=True).get(pk=agent.pk)


def agent_room(*, agent: Agent, now: datetime, policy: DispatchPolicy) -> int:
    """Free slots of an agent, 0 unless routable: one statement, so that its load and its
    routability are read at the same instant. `agent` is the row as just read (locked, in
    routing), so its own columns are not read again."""
    if agent.account_state != Agent.AccountState.ACTIVE or agent.status != Agent.Status.AVAILABLE:
        return 0
    load, connected = candidates.agent_load_and_connected_read(agent=agent, now=now, policy=policy)
    return max(agent.capacity - load, 0) if connected else 0


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


def routing_pool(*, policy: DispatchPolicy) -> scoring.Pool:
    """What every candidate is measured against: the pool's mean CSAT in the quality window
    and the highest pay rate among active agents."""
    totals = AgentRatings.objects.aggregate(count=Sum("ratings_count"), total=Sum("ratings_sum"))
    csat_mean = totals["total"] / totals["count"] if totals["count"] else None
    highest = Agent.objects.filter(account_state=Agent.AccountState.ACTIVE).aggregate(
        highest=Max("pay_rate")
    )["highest"]
    return scoring.Pool(
        csat_mean=csat_mean,
        prior_ratings=policy.quality_prior_ratings,
        highest_pay_rate=float(highest or 0),
    )


def policy_weights(policy: DispatchPolicy) -> scoring.Weights:
    return scoring.Weights(
        quality=policy.weight_quality,
        proficiency=policy.weight_proficiency,
        idle=policy.weight_idle,
        load=policy.weight_load,
        cost=policy.weight_cost,
    )


@dataclass(frozen=True)
class Candidate:
    agent_id: uuid.UUID
    score: scoring.Score


def _score(row: candidates.Row, *, now: datetime, policy: DispatchPolicy) -> scoring.Score:
    return scoring.score(
        row.inputs(now=now),
        weights=policy_weights(policy),
        pool=row.pool,
        longest_idle_seconds=row.longest_idle_seconds(now=now),
    )


def agents_ranked_for(
    *, ticket: Ticket, now: datetime, policy: DispatchPolicy, limit: int
) -> list[Candidate]:
    """The `limit` best-scoring eligible agents for this ticket with their scores, best
    first; equal scores keep the eligibility order (the longest idle first, never busy before
    all, then the earliest to join).

    The database scores every eligible agent and keeps the best `limit` (see
    dispatch.candidates): routing tries the first few of a thousand, and reading a thousand
    rows into Python cost more than the whole query.
    """
    scored = [
        (_score(row, now=now, policy=policy), row)
        for row in candidates.eligible_agents_read(
            ticket=ticket, now=now, policy=policy, limit=limit
        )
    ]
    # The database's float sums may differ from these in the last bits, enough to part two
    # equal scores: the kept candidates are ordered here by their recorded scores, then in
    # the eligibility order (idle_since, never busy first; created_at; pk).
    scored.sort(
        key=lambda pair: (
            -pair[0].total,
            pair[1].idle_since is not None,
            pair[1].idle_since,
            pair[1].created_at,
            pair[1].agent_id,
        )
    )
    return [Candidate(row.agent_id, score) for score, row in scored]


def agent_score_for(
    *, ticket: Ticket, agent_id: uuid.UUID, now: datetime, policy: DispatchPolicy
) -> scoring.Score | None:
    """This agent's score among the ticket's eligible agents; None when not one of them.

    The others count only through the longest idle time among them, read in the same
    statement, not as a row each.
    """
    rows = candidates.eligible_agents_read(
        ticket=ticket, now=now, policy=policy, limit=1, agent_id=agent_id
    )
    return _score(rows[0], now=now, policy=policy) if rows else None


@dataclass(frozen=True)
class AgentQuality:
    """Routing's quality estimate on the CSAT scale (1-5), and how many ratings it rests on."""

    csat: float
    ratings: int


def agents_quality(
    *, agent_ids: list[uuid.UUID], policy: DispatchPolicy
) -> dict[uuid.UUID, AgentQuality]:
    """Routing's quality estimate of each agent (see dispatch.scoring): the mean CSAT of its
    tickets resolved in the quality window (as AgentRatings counts them), shrunk toward the
    pool's mean, with the number of ratings behind it. A fixed number of queries for any number
    of agents."""
    pool = routing_pool(policy=policy)
    prior_mean = pool.csat_mean if pool.csat_mean is not None else scoring.NEUTRAL_CSAT
    rated = {
        ratings.agent_id: ratings for ratings in AgentRatings.objects.filter(agent__in=agent_ids)
    }
    quality = {}
    for agent_id in agent_ids:
        ratings = rated.get(agent_id, AgentRatings(agent_id=agent_id))
        quality[agent_id] = AgentQuality(
            csat=scoring.shrunk_quality(
                ratings_sum=ratings.ratings_sum,
                ratings_count=ratings.ratings_count,
                prior_mean=prior_mean,
                prior_ratings=pool.prior_ratings,
            ),
            ratings=ratings.ratings_count,
        )
    return quality


def tickets_queued_exist() -> bool:
    """Whether any ticket waits for an offer."""
    return Ticket.objects.filter(status=Ticket.Status.QUEUED).exists()


def sla_target_seconds(*, policy: DispatchPolicy, priority: int) -> int:
    """The first-assignment target for a priority."""
    return {
        Ticket.Priority.LOW: policy.sla_low_seconds,
        Ticket.Priority.NORMAL: policy.sla_normal_seconds,
        Ticket.Priority.HIGH: policy.sla_high_seconds,
        Ticket.Priority.URGENT: policy.sla_urgent_seconds,
    }[priority]


def ticket_is_past_sla(*, ticket: Ticket, now: datetime, policy: DispatchPolicy) -> bool:
    """Whether a never-assigned ticket has waited longer than its priority's target."""
    target = timedelta(seconds=sla_target_seconds(policy=policy, priority=ticket.priority))
    return ticket.first_assigned_at is None and now - ticket.created_at > target


def tickets_past_sla_unflagged(*, now: datetime, policy: DispatchPolicy) -> QuerySet[Ticket]:
    """Waiting, never-assigned tickets past their target that are not flagged yet."""
    overdue = Q()
    for priority in Ticket.Priority.values:
        target = timedelta(seconds=sla_target_seconds(policy=policy, priority=priority))
        overdue |= Q(priority=priority, created_at__lt=now - target)
    return Ticket.objects.filter(
        overdue,
        status__in=[Ticket.Status.QUEUED, Ticket.Status.OFFERED],
        sla_breached=False,
        first_assigned_at__isnull=True,
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
