"""The coordinators' live board: every figure read from the database in a small, fixed number
of queries (one per figure group, whatever the number of tickets, agents or languages), and the
periodic samples behind its history charts.

Windows: rates and times (offers, time to assign, time to resolve, SLA breaches, tickets
resolved or cancelled) cover the last hour; quality and cost cover the last 24 hours, since a
CSAT score comes in after the resolution and one hour holds too few of them to mean much.

Definitions:

- *waiting*: a ticket `queued` or `offered` (the queue depth of the metrics endpoint too); its
  wait runs from its escalation.
- *online*: an active agent whose status is not `offline` and who has a connection that
  heartbeated within the policy's heartbeat time-out.
- *utilisation*: the tickets online agents hold (assigned plus pending offers, as routing counts
  load) over the sum of their capacities.
- *time to assign*: escalation to first assignment, of the tickets first assigned in the window;
  *time to resolve*: escalation to resolution, of the tickets resolved in the window.
- *cost*: an agent's pay rate for each ticket it resolved (as earnings count it, at the current
  rate), so cost per resolved ticket = total pay / tickets resolved; it is shown per language
  beside the mean CSAT of the same tickets, so a cheaper queue never hides a worse one.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import (
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    Sum,
)

from agents.models import Agent, AgentConnection
from tickets.models import Ticket

from .models import BoardSample, DispatchPolicy, Offer
from .selectors import agents_with_load

RATE_WINDOW = timedelta(hours=1)
QUALITY_WINDOW = timedelta(hours=24)
# Samples older than this are deleted as new ones are taken; the charts show less than this.
SAMPLE_RETENTION = timedelta(hours=48)

WAITING_STATUSES = (Ticket.Status.QUEUED, Ticket.Status.OFFERED)
OFFER_OUTCOMES = (Offer.Status.ACCEPTED, Offer.Status.DECLINED, Offer.Status.EXPIRED)
CENT = Decimal("0.01")

TicketSkill = Ticket.skills.through


def percentile(values: list[float], percent: int) -> float | None:
    """The nearest-rank percentile: the smallest value with at least `percent`% of the values
    at or below it, i.e. the ⌈percent/100 × n⌉-th smallest. Always one of the values (no
    interpolation); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(percent * len(ordered) / 100), 1)
    return ordered[rank - 1]


@dataclass(frozen=True)
class QueueRow:
    """Waiting tickets of one language or one skill."""

    key: str
    depth: int
    longest_wait_seconds: int


@dataclass(frozen=True)
class Durations:
    """Exact nearest-rank percentiles of the durations, in seconds, of `count` tickets."""

    count: int
    p50: float | None
    p90: float | None

    @classmethod
    def of(cls, values: list[timedelta]) -> "Durations":
        seconds = [value.total_seconds() for value in values]
        return cls(count=len(seconds), p50=percentile(seconds, 50), p90=percentile(seconds, 90))


@dataclass(frozen=True)
class QualityRow:
    """Tickets of one language (or all, key "all") resolved in the quality window: their cost
    and, beside it, their CSAT."""

    key: str
    resolved: int
    cost: Decimal
    rated: int
    csat_sum: int

    @property
    def cost_per_resolved(self) -> Decimal | None:
        return (self.cost / self.resolved).quantize(CENT) if self.resolved else None

    @property
    def csat_mean(self) -> float | None:
        return round(self.csat_sum / self.rated, 2) if self.rated else None


@dataclass(frozen=True)
class BoardFigures:
    now: datetime
    queue_by_language: list[QueueRow]
    queue_by_skill: list[QueueRow]
    tickets_by_status: dict[str, int]
    sla_breached_open: int
    sla_breached_last_hour: int
    agents_by_status: dict[str, int]
    agents_online: int
    held_by_online: int
    capacity_online: int
    offers_last_hour: dict[str, int]
    time_to_assign: Durations
    time_to_resolve: Durations
    quality_by_language: list[QualityRow]
    quality_total: QualityRow

    @property
    def queue_depth(self) -> int:
        return sum(row.depth for row in self.queue_by_language)

    @property
    def utilisation(self) -> float | None:
        """Held tickets over capacity of the agents online, 0..1 (None with nobody online)."""
        return self.held_by_online / self.capacity_online if self.capacity_online else None


def _waited(*, now: datetime, oldest: datetime) -> int:
    return int((now - oldest).total_seconds())


def _queue_by_language(*, now: datetime) -> list[QueueRow]:
    rows = (
        Ticket.objects.filter(status__in=WAITING_STATUSES)
        .order_by()
        .values("language")
        .annotate(depth=Count("pk"), oldest=Min("created_at"))
        .order_by("language")
    )
    return [
        QueueRow(row["language"], row["depth"], _waited(now=now, oldest=row["oldest"]))
        for row in rows
    ]


def _queue_by_skill(*, now: datetime) -> list[QueueRow]:
    rows = (
        TicketSkill.objects.filter(ticket__status__in=WAITING_STATUSES)
        .order_by()
        .values("skill__slug")
        .annotate(depth=Count("ticket"), oldest=Min("ticket__created_at"))
        .order_by("skill__slug")
    )
    return [
        QueueRow(row["skill__slug"], row["depth"], _waited(now=now, oldest=row["oldest"]))
        for row in rows
    ]


def _ticket_counts(*, now: datetime) -> dict[str, int]:
    since = now - RATE_WINDOW
    statuses = Ticket.Status
    return Ticket.objects.aggregate(
        queued=Count("pk", filter=Q(status=statuses.QUEUED)),
        offered=Count("pk", filter=Q(status=statuses.OFFERED)),
        assigned=Count("pk", filter=Q(status=statuses.ASSIGNED)),
        resolved=Count("pk", filter=Q(status=statuses.RESOLVED, resolved_at__range=(since, now))),
        cancelled=Count(
            "pk", filter=Q(status=statuses.CANCELLED, cancelled_at__range=(since, now))
        ),
        sla_breached_open=Count("pk", filter=Q(status__in=Ticket.OPEN_STATUSES, sla_breached=True)),
        sla_breached_last_hour=Count("pk", filter=Q(sla_breached_at__range=(since, now))),
    )


def _agents(*, now: datetime, policy: DispatchPolicy) -> list[dict]:
    """One row per active agent: status, capacity, load and whether it is connected."""
    fresh_since = now - timedelta(seconds=policy.heartbeat_timeout_seconds)
    return list(
        agents_with_load()
        .filter(account_state=Agent.AccountState.ACTIVE)
        .annotate(
            connected=Exists(
                AgentConnection.objects.filter(
                    agent=OuterRef("pk"), last_heartbeat_at__gte=fresh_since
                )
            )
        )
        .values("status", "capacity", "load", "connected")
    )


def _is_online(agent: dict) -> bool:
    return agent["connected"] and agent["status"] != Agent.Status.OFFLINE


def agents_online_count(*, now: datetime, policy: DispatchPolicy) -> int:
    """Active agents connected and not offline (see the module's definitions)."""
    return sum(1 for agent in _agents(now=now, policy=policy) if _is_online(agent))


def _offers_last_hour(*, now: datetime) -> dict[str, int]:
    answered = dict(
        Offer.objects.filter(
            status__in=OFFER_OUTCOMES, responded_at__range=(now - RATE_WINDOW, now)
        )
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    return {outcome: answered.get(outcome, 0) for outcome in OFFER_OUTCOMES}


def _durations(tickets, *, start: str, end: str) -> Durations:
    spans = tickets.annotate(
        span=ExpressionWrapper(F(end) - F(start), output_field=DurationField())
    ).values_list("span", flat=True)
    return Durations.of(list(spans))


def _quality(*, now: datetime) -> tuple[list[QualityRow], QualityRow]:
    rows = [
        QualityRow(
            key=row["language"],
            resolved=row["resolved"],
            cost=row["cost"] or Decimal("0"),
            rated=row["rated"],
            csat_sum=row["csat_sum"] or 0,
        )
        for row in Ticket.objects.filter(
            status=Ticket.Status.RESOLVED, resolved_at__range=(now - QUALITY_WINDOW, now)
        )
        .order_by()
        .values("language")
        .annotate(
            resolved=Count("pk"),
            cost=Sum("agent__pay_rate"),
            rated=Count("csat_score"),
            csat_sum=Sum("csat_score"),
        )
        .order_by("language")
    ]
    total = QualityRow(
        key="all",
        resolved=sum(row.resolved for row in rows),
        cost=sum((row.cost for row in rows), Decimal("0")),
        rated=sum(row.rated for row in rows),
        csat_sum=sum(row.csat_sum for row in rows),
    )
    return rows, total


def board_figures(*, now: datetime, policy: DispatchPolicy) -> BoardFigures:
    """Every figure of the board at `now`, in eight queries."""
    counts = _ticket_counts(now=now)
    agents = _agents(now=now, policy=policy)
    online = [agent for agent in agents if _is_online(agent)]
    by_status = {status: 0 for status in Agent.Status.values}
    for agent in agents:
        by_status[agent["status"]] += 1
    since = now - RATE_WINDOW
    quality_rows, quality_total = _quality(now=now)
    return BoardFigures(
        now=now,
        queue_by_language=_queue_by_language(now=now),
        queue_by_skill=_queue_by_skill(now=now),
        tickets_by_status={status: counts[status] for status in Ticket.Status.values},
        sla_breached_open=counts["sla_breached_open"],
        sla_breached_last_hour=counts["sla_breached_last_hour"],
        agents_by_status=by_status,
        agents_online=len(online),
        held_by_online=sum(agent["load"] for agent in online),
        capacity_online=sum(agent["capacity"] for agent in online),
        offers_last_hour=_offers_last_hour(now=now),
        time_to_assign=_durations(
            Ticket.objects.filter(first_assigned_at__range=(since, now)),
            start="created_at",
            end="first_assigned_at",
        ),
        time_to_resolve=_durations(
            Ticket.objects.filter(status=Ticket.Status.RESOLVED, resolved_at__range=(since, now)),
            start="created_at",
            end="resolved_at",
        ),
        quality_by_language=quality_rows,
        quality_total=quality_total,
    )


def board_history(*, now: datetime, hours: int) -> list[BoardSample]:
    """The samples of the last `hours` hours, oldest first."""
    return list(BoardSample.objects.filter(taken_at__range=(now - timedelta(hours=hours), now)))
