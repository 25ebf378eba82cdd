"""Payouts in the admin: per agent and period (or ISO week), on each agent's own calendar, with
the portal's earnings rule, and as a CSV safe to open in a spreadsheet."""

import calendar
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.payouts import payouts_for
from agents.selectors import agent_earnings_by_week
from tests.factories import AgentFactory, TicketFactory, UserFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

PAYOUTS = "/admin/agents/agent/payouts/"
PAYOUTS_CSV = "/admin/agents/agent/payouts.csv"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def resolved(agent, *, assigned: str, resolved: str, outcome: str = "solved") -> Ticket:
    return TicketFactory(
        agent=agent,
        status=Ticket.Status.RESOLVED,
        outcome=outcome,
        assigned_at=at(assigned),
        first_assigned_at=at(assigned),
        resolved_at=at(resolved),
    )


@pytest.fixture
def november():
    """Maja (UTC, 10.00 a ticket), Bo (Stockholm, UTC+1 in November, 12.50) and an agent whose
    name a spreadsheet would run as a formula, with tickets on and around November 2026."""
    maja = AgentFactory(
        display_name="Maja", user=UserFactory(username="maja"), pay_rate=Decimal("10.00")
    )
    bo = AgentFactory(
        display_name="Bo",
        user=UserFactory(username="bo"),
        pay_rate=Decimal("12.50"),
        time_zone="Europe/Stockholm",
    )
    formula = AgentFactory(
        display_name="=SUM(A1:A9)", user=UserFactory(username="+evil"), pay_rate=Decimal("1.00")
    )
    # Maja: 125 s, 30 min and 30 min handled; one just before the month; one cancelled.
    resolved(maja, assigned="2026-11-02T09:57:55", resolved="2026-11-02T10:00:00")
    resolved(maja, assigned="2026-11-10T11:30:00", resolved="2026-11-10T12:00:00")
    resolved(maja, assigned="2026-11-30T23:00:00", resolved="2026-11-30T23:30:00")
    resolved(maja, assigned="2026-10-31T23:00:00", resolved="2026-10-31T23:59:00")
    TicketFactory(agent=maja, status=Ticket.Status.CANCELLED, assigned_at=at("2026-11-03T10:00"))
    # Bo: 00:30 on 1 November and 00:30 on 1 December, his time; 60 min on 15 November.
    resolved(bo, assigned="2026-10-31T22:45:00", resolved="2026-10-31T23:30:00")
    resolved(bo, assigned="2026-11-30T23:00:00", resolved="2026-11-30T23:30:00")
    resolved(bo, assigned="2026-11-15T09:00:00", resolved="2026-11-15T10:00:00", outcome="handback")
    resolved(formula, assigned="2026-11-20T10:00:00", resolved="2026-11-20T10:06:00")
    return maja, bo, formula


@pytest.fixture
def coordinator_client(client):
    client.force_login(
        get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    )
    return client


def table(payouts) -> list[tuple]:
    return [
        (row.agent.display_name, row.iso_week, row.start, row.end, row.resolved)
        + (row.handled_minutes, row.amount)
        for row in payouts.rows
    ]


def test_a_month_per_agent_counts_each_agents_own_days(november):
    # when
    payouts = payouts_for(start=date(2026, 11, 1), end=date(2026, 11, 30))

    # then: Bo's ticket at 23:30 UTC on 31 October is his 1 November, and the one at 23:30 UTC
    # on 30 November his 1 December
    nov1, nov30 = date(2026, 11, 1), date(2026, 11, 30)
    assert table(payouts) == [
        ("=SUM(A1:A9)", "", nov1, nov30, 1, Decimal("6.0"), Decimal("1.00")),
        ("Bo", "", nov1, nov30, 2, Decimal("105.0"), Decimal("25.00")),
        ("Maja", "", nov1, nov30, 3, Decimal("62.1"), Decimal("30.00")),
    ]
    assert (payouts.resolved, payouts.handled_minutes, payouts.amount) == (
        6,
        Decimal("173.1"),
        Decimal("56.00"),
    )


def test_per_iso_week_the_edge_weeks_are_clipped_to_the_period(november):
    # when
    payouts = payouts_for(start=date(2026, 11, 1), end=date(2026, 11, 30), by_week=True)

    # then
    assert table(payouts) == [
        ("=SUM(A1:A9)", "2026-W47", date(2026, 11, 16), date(2026, 11, 22), 1)
        + (Decimal("6.0"), Decimal("1.00")),
        ("Bo", "2026-W44", date(2026, 11, 1), date(2026, 11, 1), 1)
        + (Decimal("45.0"), Decimal("12.50")),
        ("Bo", "2026-W46", date(2026, 11, 9), date(2026, 11, 15), 1)
        + (Decimal("60.0"), Decimal("12.50")),
        ("Maja", "2026-W45", date(2026, 11, 2), date(2026, 11, 8), 1)
        + (Decimal("2.1"), Decimal("10.00")),
        ("Maja", "2026-W46", date(2026, 11, 9), date(2026, 11, 15), 1)
        + (Decimal("30.0"), Decimal("10.00")),
        ("Maja", "2026-W49", date(2026, 11, 30), date(2026, 11, 30), 1)
        + (Decimal("30.0"), Decimal("10.00")),
    ]


def test_a_whole_week_is_what_the_agent_sees_on_its_earnings_page(november):
    # given
    _, bo, _ = november
    portal_weeks = {week.week_start: week for week in agent_earnings_by_week(agent=bo)}

    # when: the ISO weeks of Bo's November tickets, each in full
    rows = payouts_for(start=date(2026, 10, 26), end=date(2026, 12, 6), by_week=True).rows

    # then
    bo_rows = [(row.start, row.resolved, row.amount) for row in rows if row.agent == bo]
    assert bo_rows == [
        (week, portal_weeks[week].resolved, portal_weeks[week].earned)
        for week in sorted(portal_weeks)
    ]
    assert [week for week, _, _ in bo_rows] == [
        date(2026, 10, 26),
        date(2026, 11, 9),
        date(2026, 11, 30),
    ]


def test_the_queries_do_not_grow_with_the_agents(november):
    # given
    with CaptureQueriesContext(connection) as three_agents:
        payouts_for(start=date(2026, 11, 1), end=date(2026, 11, 30))
    for _ in range(4):
        resolved(AgentFactory(), assigned="2026-11-05T10:00:00", resolved="2026-11-05T10:05:00")

    # when
    with CaptureQueriesContext(connection) as seven_agents:
        payouts = payouts_for(start=date(2026, 11, 1), end=date(2026, 11, 30))

    # then: the agents, then one query per time zone (UTC and Stockholm)
    assert len(payouts.rows) == 7
    assert len(seven_agents) == len(three_agents) == 3


def test_the_page_lists_the_rows_and_totals(coordinator_client, november):
    # when
    response = coordinator_client.get(PAYOUTS, {"start": "2026-11-01", "end": "2026-11-30"})

    # then
    page = re.sub(r"\s+", " ", response.content.decode())
    assert response.status_code == 200
    assert re.findall(r"<tr> <td><a href=[^>]*>([^<]*)</a></td> (.*?) </tr>", page) == [
        ("=SUM(A1:A9)", "<td>1</td> <td>6.0</td> <td>1.00</td> <td>1.00</td>"),
        ("Bo", "<td>2</td> <td>105.0</td> <td>12.50</td> <td>25.00</td>"),
        ("Maja", "<td>3</td> <td>62.1</td> <td>10.00</td> <td>30.00</td>"),
    ]
    assert '<td id="total-resolved">6</td>' in page
    assert '<td id="total-minutes">173.1</td>' in page
    assert '<td id="total-amount">56.00</td>' in page
    assert 'href="/admin/agents/agent/payouts.csv?start=2026-11-01&amp;end=2026-11-30"' in page


def test_the_default_period_is_the_current_month(coordinator_client):
    # when
    response = coordinator_client.get(PAYOUTS)

    # then
    today = timezone.localdate()
    last_day = calendar.monthrange(today.year, today.month)[1]
    payouts = response.context["payouts"]
    assert response.status_code == 200
    assert (payouts.start, payouts.end) == (today.replace(day=1), today.replace(day=last_day))


def test_an_iso_week_is_a_period_of_its_own(coordinator_client, november):
    # when
    response = coordinator_client.get(PAYOUTS, {"week": "2026-W46"})

    # then
    payouts = response.context["payouts"]
    assert (payouts.start, payouts.end) == (date(2026, 11, 9), date(2026, 11, 15))
    assert table(payouts) == [
        ("Bo", "", payouts.start, payouts.end, 1, Decimal("60.0"), Decimal("12.50")),
        ("Maja", "", payouts.start, payouts.end, 1, Decimal("30.0"), Decimal("10.00")),
    ]


def test_the_csv_has_the_same_rows_and_keeps_formulas_as_text(coordinator_client, november):
    # when
    response = coordinator_client.get(
        PAYOUTS_CSV, {"start": "2026-11-01", "end": "2026-11-30", "by_week": "on"}
    )

    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="payouts-2026-11-01-2026-11-30.csv"'
    )
    assert response.content.decode() == (
        "period_start,period_end,iso_week,agent,username,resolved,handled_minutes,pay_rate,amount\r\n"
        "2026-11-16,2026-11-22,2026-W47,'=SUM(A1:A9),'+evil,1,6.0,1.00,1.00\r\n"
        "2026-11-01,2026-11-01,2026-W44,Bo,bo,1,45.0,12.50,12.50\r\n"
        "2026-11-09,2026-11-15,2026-W46,Bo,bo,1,60.0,12.50,12.50\r\n"
        "2026-11-02,2026-11-08,2026-W45,Maja,maja,1,2.1,10.00,10.00\r\n"
        "2026-11-09,2026-11-15,2026-W46,Maja,maja,1,30.0,10.00,10.00\r\n"
        "2026-11-30,2026-11-30,2026-W49,Maja,maja,1,30.0,10.00,10.00\r\n"
    )


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (
            {"start": "2026-11-30", "end": "2026-11-01"},
            "The period must end on or after its first day.",
        ),
        ({"start": "2025-01-01", "end": "2026-01-02"}, "The period may be at most 366 days long."),
        ({"week": "2026-W54"}, "Give the week as an ISO week that exists, such as 2026-W48."),
        ({"week": "next week"}, "Give the week as an ISO week that exists, such as 2026-W48."),
        (
            {"week": "2026-W46", "start": "2026-11-01"},
            "Give either a week or a date range, not both.",
        ),
        ({"start": "1 November"}, "Enter a valid date."),
    ],
)
def test_a_bad_period_is_a_400_saying_why(coordinator_client, query, error):
    # when
    page = coordinator_client.get(PAYOUTS, query)
    csv_file = coordinator_client.get(PAYOUTS_CSV, query)

    # then
    assert page.status_code == 400
    assert error in page.content.decode()
    assert page.context["payouts"] is None
    assert csv_file.status_code == 400
    assert error in csv_file.content.decode()


def test_the_agent_list_links_to_the_payouts(coordinator_client):
    # when
    response = coordinator_client.get("/admin/agents/agent/")

    # then
    assert '<a href="/admin/agents/agent/payouts/">Payouts</a>' in response.content.decode()


@pytest.mark.parametrize("path", [PAYOUTS, PAYOUTS_CSV])
def test_payouts_are_for_staff_only(client, november, path):
    # given: an agent logged in, and a staff member without the right to view agents
    client.force_login(november[0].user)
    agent_answer = client.get(path)
    clerk = UserFactory(username="clerk", is_staff=True)
    client.force_login(clerk)
    clerk_answer = client.get(path)
    clerk.user_permissions.add(Permission.objects.get(codename="view_agent"))

    # when
    allowed = client.get(path, {"start": "2026-11-01", "end": "2026-11-30"})

    # then
    assert (agent_answer.status_code, agent_answer["Location"]) == (
        302,
        f"/admin/login/?next={path}",
    )
    assert clerk_answer.status_code == 403
    assert allowed.status_code == 200
