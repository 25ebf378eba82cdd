"""Reads for the agent portal: the agent's day, history and earnings, in the agent's time zone.

Earnings are the agent's pay rate for every ticket it resolved, whatever the outcome: the rate
is paid per resolved ticket. Weeks run Monday to Sunday in the agent's own time zone, so a
ticket resolved late on a Sunday evening counts in that week wherever the server is.
"""

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, QuerySet
from django.db.models.functions import TruncWeek

from tickets.models import Ticket

from .models import Agent, AgentAvailability


@dataclass(frozen=True)
class DayTotals:
    resolved: int
    earned: Decimal


@dataclass(frozen=True)
class WeekEarnings:
    week_start: date
    resolved: int
    earned: Decimal

    @property
    def week_end(self) -> date:
        return self.week_start + timedelta(days=6)


@dataclass(frozen=True)
class CsatSummary:
    ratings: int
    average: Decimal | None


def agent_zone(agent: Agent) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(agent.time_zone)


def agent_local_day(*, agent: Agent, day: date) -> tuple[datetime, datetime]:
    """The instants a local calendar day starts and ends (not always 24 hours apart: DST).

    In UTC, because Python subtracts two datetimes of one zone as wall-clock times.
    """
    zone = agent_zone(agent)
    return (
        datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC),
        datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC),
    )


def agent_resolved_tickets(*, agent: Agent) -> QuerySet[Ticket]:
    """The tickets this agent resolved, newest first, with `handling` (assigned to resolved)."""
    return (
        Ticket.objects.filter(agent=agent, status=Ticket.Status.RESOLVED)
        .annotate(
            handling=ExpressionWrapper(
                F("resolved_at") - F("assigned_at"), output_field=DurationField()
            )
        )
        .order_by("-resolved_at", "-id")
    )


def agent_active_ticket_count(*, agent: Agent) -> int:
    return Ticket.objects.filter(agent=agent, status=Ticket.Status.ASSIGNED).count()


def agent_pay(*, agent: Agent, resolved: int) -> Decimal:
    """What an agent earns for this many resolved tickets: its current pay rate for each."""
    return agent.pay_rate * resolved


def agent_today(*, agent: Agent, now: datetime) -> DayTotals:
    """Tickets resolved and money earned on the agent's current local day."""
    start, end = agent_local_day(agent=agent, day=now.astimezone(agent_zone(agent)).date())
    resolved = agent_resolved_tickets(agent=agent).filter(
        resolved_at__gte=start, resolved_at__lt=end
    )
    count = resolved.count()
    return DayTotals(resolved=count, earned=agent_pay(agent=agent, resolved=count))


def agent_earnings_by_week(*, agent: Agent) -> list[WeekEarnings]:
    """Every week with a resolved ticket, newest first."""
    weeks = (
        agent_resolved_tickets(agent=agent)
        .annotate(week=TruncWeek("resolved_at", tzinfo=agent_zone(agent)))
        .order_by()
        .values("week")
        .annotate(resolved=Count("pk"))
        .order_by("-week")
    )
    return [
        WeekEarnings(
            week_start=row["week"].date(),
            resolved=row["resolved"],
            earned=agent_pay(agent=agent, resolved=row["resolved"]),
        )
        for row in weeks
    ]


def agent_csat(*, agent: Agent) -> CsatSummary:
    """How many resolved tickets the customers rated, and the mean score (two decimals)."""
    rated = agent_resolved_tickets(agent=agent).filter(csat_score__isnull=False)
    totals = rated.aggregate(ratings=Count("pk"), average=Avg("csat_score"))
    average = totals["average"]
    return CsatSummary(
        ratings=totals["ratings"],
        average=None if average is None else Decimal(str(average)).quantize(Decimal("0.01")),
    )


def agent_availability(*, agent: Agent) -> QuerySet[AgentAvailability]:
    return AgentAvailability.objects.filter(agent=agent).order_by("weekday", "start_time")
