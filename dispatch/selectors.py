import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Avg,
    Case,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast, Coalesce, Greatest

from agents.models import Agent, AgentConnection, AgentLanguage, AgentSkill
from tickets.models import Ticket
from tickets.selectors import tickets_in_dispatch_order

from . import scoring
from .models import DispatchPolicy, Offer

TicketSkill = Ticket.skills.through


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
    fresh_since = now - timedelta(seconds=policy.heartbeat_timeout_seconds)
    load, connected = (
        agents_with_load()
        .filter(pk=agent.pk)
        .values_list(
            "load",
            Exists(AgentConnection.objects.filter(agent=agent, last_heartbeat_at__gte=fresh_since)),
        )
        .get()
    )
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


@dataclass(frozen=True)
class Eligibility:
    """The hard filters' thresholds for one ticket at one moment, relaxed as it waits."""

    min_proficiency: int
    secondary_languages: bool


def ticket_eligibility(*, ticket: Ticket, now: datetime, policy: DispatchPolicy) -> Eligibility:
    """The relaxation steps: from relax_proficiency_after_seconds of waiting any proficiency in
    the ticket's skills will do, from relax_language_after_seconds a secondary language too."""
    waited = (now - ticket.created_at).total_seconds()
    return Eligibility(
        min_proficiency=(
            1 if waited >= policy.relax_proficiency_after_seconds else policy.min_proficiency
        ),
        secondary_languages=waited >= policy.relax_language_after_seconds,
    )


def _offered_before(*, ticket=None, agent=None) -> Exists:
    """Whether this agent had this ticket before; the side not given is the outer row."""
    # An offer or a held ticket taken away (the agent went offline, a coordinator moved it) is
    # not the agent's choice; a declined, missed or released one is, and the ticket never
    # returns to them.
    return Exists(
        Offer.objects.filter(ticket=ticket or OuterRef("pk"), agent=agent or OuterRef("pk"))
        .exclude(status=Offer.Status.REVOKED)
        .exclude(
            status=Offer.Status.ACCEPTED,
            revoke_reason__in=[Offer.RevokeReason.OFFLINE, Offer.RevokeReason.REASSIGNED],
        )
    )


def agents_eligible_for(
    *, ticket: Ticket, skill_ids: list[int], now: datetime, policy: DispatchPolicy
) -> QuerySet[Agent]:
    """Routable agents who pass the ticket's hard filters, longest idle first; `skill_ids` are
    the ticket's skills.

    They speak its language (as a primary language until the language step relaxes it), have
    every skill it needs at the required proficiency, and never declined, missed or released it.
    """
    eligibility = ticket_eligibility(ticket=ticket, now=now, policy=policy)
    speaks = AgentLanguage.objects.filter(agent=OuterRef("pk"), code=ticket.language)
    if not eligibility.secondary_languages:
        speaks = speaks.filter(is_primary=True)
    agents = agents_routable(now=now, policy=policy).filter(Exists(speaks))
    for skill_id in skill_ids:
        agents = agents.filter(
            Exists(
                AgentSkill.objects.filter(
                    agent=OuterRef("pk"),
                    skill_id=skill_id,
                    proficiency__gte=eligibility.min_proficiency,
                )
            )
        )
    return agents.exclude(_offered_before(ticket=ticket)).order_by(
        F("idle_since").asc(nulls_first=True), "created_at", "pk"
    )


def _quality_window(*, now: datetime, policy: DispatchPolicy) -> QuerySet[Ticket]:
    """Rated tickets resolved within the policy's quality window."""
    return Ticket.objects.filter(
        status=Ticket.Status.RESOLVED,
        csat_score__isnull=False,
        resolved_at__gte=now - timedelta(days=policy.quality_window_days),
    )


def routing_pool(*, now: datetime, policy: DispatchPolicy) -> scoring.Pool:
    """What every candidate is measured against: the pool's mean CSAT in the quality window
    and the highest pay rate among active agents."""
    csat_mean = _quality_window(now=now, policy=policy).aggregate(mean=Avg("csat_score"))["mean"]
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


def _skill_ids(ticket: Ticket) -> list[int]:
    # all(), not values_list(): a ticket read with its skills prefetched costs no query here.
    return [skill.pk for skill in ticket.skills.all()]


class EpochSeconds(Func):
    """A datetime as float seconds since the Unix epoch, on PostgreSQL and SQLite alike."""

    template = "date_part('epoch', %(expressions)s)"
    output_field = FloatField()

    def as_sqlite(self, compiler, connection, **extra_context):
        # SQLite keeps datetimes as UTC text; julianday() reads it in days since 4714 BC.
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)",
            **extra_context,
        )


def _as_float(expression) -> Cast:
    return Cast(expression, FloatField())


def _on_scale(expression, lowest: int, highest: int):
    return (expression - Value(float(lowest))) / Value(float(highest - lowest))


def _rated_in_window(*, now: datetime, policy: DispatchPolicy) -> QuerySet[Ticket]:
    """The outer agent's rated tickets in the quality window, grouped by agent."""
    return (
        _quality_window(now=now, policy=policy)
        .filter(agent=OuterRef("pk"))
        .order_by()
        .values("agent")
    )


# What routing reads of each candidate: dispatch.scoring's inputs.
_INPUT_COLUMNS = (
    "pk",
    "capacity",
    "pay_rate",
    "idle_since",
    "load",
    "ratings_count",
    "ratings_sum",
    "proficiency",
)


def _with_inputs(
    agents: QuerySet[Agent], *, skill_ids: list[int], now: datetime, policy: DispatchPolicy
) -> QuerySet[Agent]:
    """Eligible agents (see agents_eligible_for, which gives `load`) annotated with the rest of
    their scoring inputs: their ratings in the quality window and their mean proficiency in
    the ticket's skills."""
    rated = _rated_in_window(now=now, policy=policy)
    return agents.annotate(
        ratings_count=_count(rated),
        ratings_sum=Coalesce(
            Subquery(
                rated.annotate(total=Sum("csat_score")).values("total"),
                output_field=IntegerField(),
            ),
            0,
        ),
        proficiency=_as_float(
            Subquery(
                AgentSkill.objects.filter(agent=OuterRef("pk"), skill_id__in=skill_ids)
                .order_by()
                .values("agent")
                .annotate(mean=Avg("proficiency"))
                .values("mean")
            )
        ),
    )


def _total(
    *, skill_ids: list[int], now: datetime, policy: DispatchPolicy, pool: scoring.Pool
) -> Combinable:
    """dispatch.scoring's total as SQL, over the columns of _with_inputs and the window
    column `earliest_idle` (the earliest idle_since among the eligible agents: the longest
    idle among those who had work is since then).

    It only orders the candidates: the scores routing records are computed by dispatch.scoring
    from the columns read, and tests hold the two orders equal.
    """
    weights = policy_weights(policy)
    prior_mean = pool.csat_mean if pool.csat_mean is not None else scoring.NEUTRAL_CSAT
    prior = Value(float(pool.prior_ratings))
    # scoring.shrunk_quality from one lookup of the agent's ratings; an agent without any in
    # the window is at the pool's mean.
    quality = Coalesce(
        _as_float(
            Subquery(
                _rated_in_window(now=now, policy=policy)
                .annotate(
                    shrunk=(Value(prior_mean) * prior + _as_float(Sum("csat_score")))
                    / (prior + Count("pk"))
                )
                .values("shrunk")
            )
        ),
        Value(prior_mean),
    )
    if skill_ids:
        proficiency = _on_scale(
            F("proficiency"), scoring.PROFICIENCY_LOWEST, scoring.PROFICIENCY_HIGHEST
        )
    else:
        proficiency = Value(1.0)
    now_seconds = Value(now.timestamp())
    idle = Case(
        When(Q(idle_since__isnull=True) | Q(earliest_idle__gte=now), then=Value(1.0)),
        default=Greatest(now_seconds - EpochSeconds("idle_since"), Value(0.0))
        / (now_seconds - EpochSeconds("earliest_idle")),
    )
    # Eligible agents are under capacity, so their capacity is at least 1.
    load = Value(1.0) - _as_float("load") / F("capacity")
    if pool.highest_pay_rate > 0:
        cost = Value(1.0) - _as_float("pay_rate") / Value(pool.highest_pay_rate)
    else:
        cost = Value(1.0)
    return (
        Value(weights.quality) * _on_scale(quality, scoring.CSAT_LOWEST, scoring.CSAT_HIGHEST)
        + Value(weights.proficiency) * proficiency
        + Value(weights.idle) * idle
        + Value(weights.load) * load
        + Value(weights.cost) * cost
    )


def _inputs(row, *, skill_ids: list[int], now: datetime) -> scoring.CandidateInputs:
    return scoring.CandidateInputs(
        ratings_count=row.ratings_count,
        ratings_sum=row.ratings_sum,
        proficiency=row.proficiency if skill_ids else None,
        idle_seconds=(now - row.idle_since).total_seconds() if row.idle_since is not None else None,
        load=row.load,
        capacity=row.capacity,
        pay_rate=float(row.pay_rate),
    )


def _longest_idle_seconds(*, earliest: datetime | None, now: datetime) -> float:
    """The longest idle among the eligible agents who had work, since the earliest
    idle_since among them; 0 when none had."""
    return (now - earliest).total_seconds() if earliest is not None else 0.0


def agents_ranked_for(
    *, ticket: Ticket, now: datetime, policy: DispatchPolicy, limit: int
) -> list[Candidate]:
    """The `limit` best-scoring eligible agents for this ticket with their scores, best
    first; equal scores keep the eligibility order (the longest idle first, never busy before
    all, then the earliest to join).

    The database scores every eligible agent and keeps the best `limit`: routing tries the
    first few of a thousand, and reading a thousand rows into Python cost more than the
    whole query.
    """
    skill_ids = _skill_ids(ticket)
    pool = routing_pool(now=now, policy=policy)
    eligible = agents_eligible_for(ticket=ticket, skill_ids=skill_ids, now=now, policy=policy)
    rows = (
        _with_inputs(eligible, skill_ids=skill_ids, now=now, policy=policy)
        .annotate(earliest_idle=Window(Min("idle_since")))
        .annotate(total=_total(skill_ids=skill_ids, now=now, policy=policy, pool=pool))
        .order_by(F("total").desc(), *eligible.query.order_by)
        .values_list(*_INPUT_COLUMNS, "created_at", "earliest_idle", named=True)[:limit]
    )
    weights = policy_weights(policy)
    scored = [
        (
            scoring.score(
                _inputs(row, skill_ids=skill_ids, now=now),
                weights=weights,
                pool=pool,
                longest_idle_seconds=_longest_idle_seconds(earliest=row.earliest_idle, now=now),
            ),
            row,
        )
        for row in rows
    ]
    # The database's float sums may differ from these in the last bits, enough to part two
    # equal scores: the kept candidates are ordered here by their recorded scores, then in
    # agents_eligible_for's order (idle_since, never busy first; created_at; pk).
    scored.sort(
        key=lambda pair: (
            -pair[0].total,
            pair[1].idle_since is not None,
            pair[1].idle_since,
            pair[1].created_at,
            pair[1].pk,
        )
    )
    return [Candidate(row.pk, score) for score, row in scored]


def agent_score_for(
    *, ticket: Ticket, agent_id: uuid.UUID, now: datetime, policy: DispatchPolicy
) -> scoring.Score | None:
    """This agent's score among the ticket's eligible agents; None when not one of them.

    The others count only through the longest idle time among them, read as one aggregate,
    not as a row each.
    """
    skill_ids = _skill_ids(ticket)
    eligible = agents_eligible_for(ticket=ticket, skill_ids=skill_ids, now=now, policy=policy)
    rows = list(
        _with_inputs(
            eligible.filter(pk=agent_id), skill_ids=skill_ids, now=now, policy=policy
        ).values_list(*_INPUT_COLUMNS, named=True)
    )
    if not rows:
        return None
    earliest = eligible.aggregate(earliest=Min("idle_since"))["earliest"]
    return scoring.score(
        _inputs(rows[0], skill_ids=skill_ids, now=now),
        weights=policy_weights(policy),
        pool=routing_pool(now=now, policy=policy),
        longest_idle_seconds=_longest_idle_seconds(earliest=earliest, now=now),
    )


@dataclass(frozen=True)
class AgentQuality:
    """Routing's quality estimate on the CSAT scale (1-5), and how many ratings it rests on."""

    csat: float
    ratings: int


def agents_quality(
    *, agent_ids: list[uuid.UUID], now: datetime, policy: DispatchPolicy
) -> dict[uuid.UUID, AgentQuality]:
    """Routing's quality estimate of each agent (see dispatch.scoring): the mean CSAT of its
    tickets resolved in the policy's quality window, shrunk toward the pool's mean, with the
    number of ratings behind it. A fixed number of queries for any number of agents."""
    pool = routing_pool(now=now, policy=policy)
    prior_mean = pool.csat_mean if pool.csat_mean is not None else scoring.NEUTRAL_CSAT
    rated = {
        row["agent"]: row
        for row in _quality_window(now=now, policy=policy)
        .filter(agent__in=agent_ids)
        .order_by()
        .values("agent")
        .annotate(count=Count("pk"), total=Sum("csat_score"))
    }
    quality = {}
    for agent_id in agent_ids:
        row = rated.get(agent_id, {"count": 0, "total": 0})
        quality[agent_id] = AgentQuality(
            csat=scoring.shrunk_quality(
                ratings_sum=row["total"],
                ratings_count=row["count"],
                prior_mean=prior_mean,
                prior_ratings=pool.prior_ratings,
            ),
            ratings=row["count"],
        )
    return quality


def tickets_waiting_for(*, agent: Agent, now: datetime, policy: DispatchPolicy) -> QuerySet[Ticket]:
    """Queued tickets this agent passes the hard filters for, in dispatch order.

    The same filters as agents_eligible_for, seen from the agent's side, each relaxation step
    applying to the tickets that have waited long enough for it.
    """
    languages = list(agent.languages.values_list("code", "is_primary"))
    primary = [code for code, is_primary in languages if is_primary]
    secondary = [code for code, is_primary in languages if not is_primary]
    language_relaxed_since = now - timedelta(seconds=policy.relax_language_after_seconds)
    proficiency_relaxed_since = now - timedelta(seconds=policy.relax_proficiency_after_seconds)
    needs = TicketSkill.objects.filter(ticket=OuterRef("pk"))
    has = AgentSkill.objects.filter(agent=agent)
    tickets = (
        Ticket.objects.filter(status=Ticket.Status.QUEUED)
        .filter(
            Q(language__in=primary)
            | Q(language__in=secondary, created_at__lte=language_relaxed_since)
        )
        .exclude(Exists(needs.exclude(skill__in=has.values("skill"))))
        .filter(
            Q(created_at__lte=proficiency_relaxed_since)
            | ~Exists(
                needs.filter(
                    skill__in=has.filter(proficiency__lt=policy.min_proficiency).values("skill")
                )
            )
        )
        .exclude(_offered_before(agent=agent))
    )
    return tickets_in_dispatch_order(tickets, aging_seconds=policy.aging_seconds_per_priority)


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
