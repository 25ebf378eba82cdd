"""The portal's day, week and rating figures, in the agent's own time zone."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from agents.selectors import (
    CsatSummary,
    DayTotals,
    WeekEarnings,
    agent_csat,
    agent_earnings_by_week,
    agent_local_day,
    agent_resolved_tickets,
    agent_today,
)
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

# New York moved from UTC-5 to UTC-4 at 02:00 local time on Sunday 8 March 2026.
NEW_YORK = "America/New_York"


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def maja(agent_factory):
    return agent_factory(display_name="Maja", pay_rate=Decimal("2.50"), time_zone=NEW_YORK)


@pytest.fixture
def resolve(ticket_factory):
    def create(agent, resolved_at, *, minutes=10, csat=None):
        return ticket_factory(
            agent=agent,
            status=Ticket.Status.RESOLVED,
            outcome=Ticket.Outcome.SOLVED,
            assigned_at=resolved_at - timedelta(minutes=minutes),
            resolved_at=resolved_at,
            csat_score=csat,
        )

    return create


def test_a_local_day_is_23_hours_long_when_the_clocks_go_forward(maja):
    start, end = agent_local_day(agent=maja, day=date(2026, 3, 8))

    assert (start, end) == (at(2026, 3, 8, 5), at(2026, 3, 9, 4))
    assert end - start == timedelta(hours=23)


def test_weeks_run_monday_to_sunday_in_the_agents_time_zone(maja, resolve):
    # Monday 03:30 UTC is still Sunday evening in New York: the week before.
    resolve(maja, at(2026, 3, 2, 3, 30))
    # Monday 00:30 in New York (UTC-5).
    resolve(maja, at(2026, 3, 2, 5, 30))
    # Sunday 23:30 in New York, on UTC-4 since that morning.
    resolve(maja, at(2026, 3, 9, 3, 30))
    # Monday 00:30 in New York; on the winter offset it would still be Sunday.
    resolve(maja, at(2026, 3, 9, 4, 30))
    resolve(maja, at(2026, 3, 10, 15, 0))

    assert agent_earnings_by_week(agent=maja) == [
        WeekEarnings(week_start=date(2026, 3, 9), resolved=2, earned=Decimal("5.00")),
        WeekEarnings(week_start=date(2026, 3, 2), resolved=2, earned=Decimal("5.00")),
        WeekEarnings(week_start=date(2026, 2, 23), resolved=1, earned=Decimal("2.50")),
    ]
    assert agent_earnings_by_week(agent=maja)[0].week_end == date(2026, 3, 15)


def test_only_the_agents_own_resolved_tickets_are_paid(
    maja, agent_factory, resolve, ticket_factory
):
    other = agent_factory(pay_rate=Decimal("9.00"), time_zone=NEW_YORK)
    resolve(maja, at(2026, 3, 4, 15, 0))
    resolve(other, at(2026, 3, 4, 15, 0))
    ticket_factory(agent=maja, status=Ticket.Status.ASSIGNED, assigned_at=at(2026, 3, 4, 15, 0))
    ticket_factory(agent=maja, status=Ticket.Status.CANCELLED, assigned_at=at(2026, 3, 4, 9, 0))

    assert agent_earnings_by_week(agent=maja) == [
        WeekEarnings(week_start=date(2026, 3, 2), resolved=1, earned=Decimal("2.50"))
    ]


def test_every_outcome_is_a_resolved_ticket_and_paid(maja, ticket_factory):
    for outcome in Ticket.Outcome.values:
        ticket_factory(
            agent=maja,
            status=Ticket.Status.RESOLVED,
            outcome=outcome,
            assigned_at=at(2026, 3, 4, 14, 0),
            resolved_at=at(2026, 3, 4, 15, 0),
        )

    assert agent_earnings_by_week(agent=maja) == [
        WeekEarnings(week_start=date(2026, 3, 2), resolved=3, earned=Decimal("7.50"))
    ]


def test_today_is_the_agents_local_day(maja, resolve):
    resolve(maja, at(2026, 3, 10, 3, 59))  # Monday 23:59 in New York: yesterday
    resolve(maja, at(2026, 3, 10, 4, 0))  # Tuesday 00:00
    resolve(maja, at(2026, 3, 10, 22, 0))
    resolve(maja, at(2026, 3, 11, 3, 59))  # Tuesday 23:59
    resolve(maja, at(2026, 3, 11, 4, 0))  # Wednesday 00:00: tomorrow

    # Tuesday 23:59:30 in New York.
    today = agent_today(agent=maja, now=at(2026, 3, 11, 3, 59, 30))

    assert today == DayTotals(resolved=3, earned=Decimal("7.50"))


def test_a_day_without_work_earns_nothing(maja):
    assert agent_today(agent=maja, now=at(2026, 3, 11, 2, 0)) == DayTotals(
        resolved=0, earned=Decimal("0.00")
    )
    assert agent_earnings_by_week(agent=maja) == []


def test_resolved_tickets_come_newest_first_with_their_handling_time(maja, resolve):
    first = resolve(maja, at(2026, 3, 10, 9, 0), minutes=4)
    second = resolve(maja, at(2026, 3, 10, 11, 0), minutes=75)

    tickets = list(agent_resolved_tickets(agent=maja))

    assert [(ticket.pk, ticket.handling) for ticket in tickets] == [
        (second.pk, timedelta(minutes=75)),
        (first.pk, timedelta(minutes=4)),
    ]


def test_csat_counts_only_rated_tickets(maja, resolve):
    resolve(maja, at(2026, 3, 10, 9, 0), csat=5)
    resolve(maja, at(2026, 3, 10, 10, 0), csat=4)
    resolve(maja, at(2026, 3, 10, 11, 0), csat=4)
    resolve(maja, at(2026, 3, 10, 12, 0))

    assert agent_csat(agent=maja) == CsatSummary(ratings=3, average=Decimal("4.33"))


def test_csat_without_ratings_has_no_average(maja, resolve):
    resolve(maja, at(2026, 3, 10, 9, 0))

    assert agent_csat(agent=maja) == CsatSummary(ratings=0, average=None)
