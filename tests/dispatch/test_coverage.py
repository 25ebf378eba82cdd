"""Coverage: declared availability (each agent in its own zone, across a daylight-saving change)
against the demand of the same weekday and hour of the last 4 weeks, the gaps, and the page."""

import zoneinfo
from datetime import UTC, datetime, time, timedelta
from fractions import Fraction

import pytest

from agents.models import Agent, AgentAvailability
from dispatch.coverage import Cell, availability_instants, coverage
from tests.factories import UserFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

STOCKHOLM = zoneinfo.ZoneInfo("Europe/Stockholm")
# Monday 23 March 2026, 09:20 in Stockholm (UTC+1). Stockholm's clocks go forward on Sunday
# 29 March at 02:00 (to 03:00): inside the 7 days. New York's went forward on 8 March.
NOW = datetime(2026, 3, 23, 8, 20, tzinfo=UTC)
MON, TUE, WED, SAT, SUN = 0, 1, 2, 5, 6


def window(agent: Agent, weekday: int, start: str, end: str) -> None:
    AgentAvailability.objects.create(
        agent=agent,
        weekday=weekday,
        start_time=time.fromisoformat(start),
        end_time=time.fromisoformat(end),
    )


def escalations(ticket_factory, *, language: str, at: datetime, count: int) -> None:
    for _ in range(count):
        ticket = ticket_factory(language=language)
        Ticket.objects.filter(pk=ticket.pk).update(created_at=at)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=STOCKHOLM)


def cell_at(report, language: str, wall: datetime) -> Cell:
    (slot,) = [slot for slot in report.slots if slot.start.replace(tzinfo=None) == wall]
    return slot.cells[language]


@pytest.fixture
def known_data(agent_factory, ticket_factory):
    ann = agent_factory(languages=["sv"], time_zone="Europe/Stockholm")
    window(ann, MON, "09:00", "17:00")
    bob = agent_factory(languages=["en"], time_zone="America/New_York")
    # Swedish as a secondary language: not counted for Swedish.
    bob.languages.create(code="sv", is_primary=False)
    # 45 minutes: at least half of the hour, so it counts.
    window(bob, TUE, "09:00", "09:45")
    cat = agent_factory(languages=["en"], time_zone="Asia/Tokyo")
    # 20 minutes: less than half of the hour, so it does not count.
    window(cat, WED, "10:00", "10:20")
    dan = agent_factory(
        languages=["en", "sv"], time_zone="UTC", account_state=Agent.AccountState.SUSPENDED
    )
    for day in range(7):
        window(dan, day, "00:00", "23:59")
    # A night shift past midnight, as two windows, across the night the clocks go forward.
    eve = agent_factory(languages=["sv"], time_zone="Europe/Stockholm")
    window(eve, SAT, "23:00", "23:59")
    window(eve, SUN, "00:00", "04:00")

    # Swedish on Monday 10:00-11:00, 1 to 5 weeks back (the fifth is out of the 4 weeks).
    for weeks_back, count in [(1, 3), (2, 2), (4, 1), (5, 7)]:
        at = local(2026, 3, 23, 10, 5) - timedelta(weeks=weeks_back)
        escalations(ticket_factory, language="sv", at=at, count=count)
    # English on Tuesday 14:00-15:00: 5 and 4 tickets.
    escalations(ticket_factory, language="en", at=local(2026, 3, 17, 14, 10), count=5)
    escalations(ticket_factory, language="en", at=local(2026, 3, 10, 14, 59), count=4)
    # English on Wednesday 02:00-03:00, three weeks back.
    escalations(ticket_factory, language="en", at=local(2026, 3, 4, 2, 30), count=1)
    # Swedish on Sunday 03:00-04:00 by the wall clock, the week before the change.
    escalations(ticket_factory, language="sv", at=local(2026, 3, 22, 3, 10), count=4)
    # English in this hour so far: demand for the same hour next Monday.
    escalations(ticket_factory, language="en", at=NOW - timedelta(minutes=5), count=2)


def test_the_slots_are_the_next_168_hours_from_the_current_one(known_data):
    report = coverage(now=NOW, zone=STOCKHOLM, per_agent=4)

    assert len(report.slots) == 168
    assert report.slots[0].start == local(2026, 3, 23, 9, 0)
    # After the change to summer time: 168 real hours on, an hour later by the wall clock.
    assert report.slots[-1].start == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert report.slots[-1].start.replace(tzinfo=None) == datetime(2026, 3, 30, 9, 0)
    assert report.languages == ["en", "sv"]


def test_agents_counted_from_their_own_zones(known_data):
    report = coverage(now=NOW, zone=STOCKHOLM, per_agent=4)
    sv_agents = {
        slot.start.replace(tzinfo=None): slot.cells["sv"].agents
        for slot in report.slots
        if slot.cells["sv"].agents
    }
    en_agents = {
        slot.start.replace(tzinfo=None): slot.cells["en"].agents
        for slot in report.slots
        if slot.cells["en"].agents
    }

    # Ann, Monday 09-17 in Stockholm, this Monday and (in summer time) the next one's first
    # hour; Eve on Saturday night and Sunday morning, where 02:00 does not exist.
    assert sv_agents == {
        **{datetime(2026, 3, 23, hour, 0): 1 for hour in range(9, 17)},
        datetime(2026, 3, 28, 23, 0): 1,
        datetime(2026, 3, 29, 0, 0): 1,
        datetime(2026, 3, 29, 1, 0): 1,
        datetime(2026, 3, 29, 3, 0): 1,
        datetime(2026, 3, 30, 9, 0): 1,
    }
    # Bob, Tuesday 09:00-09:45 in New York (UTC-4 in summer time) is 14:00 in Stockholm.
    assert en_agents == {datetime(2026, 3, 24, 14, 0): 1}


def test_demand_is_the_mean_of_the_same_hour_in_the_last_4_weeks(known_data):
    report = coverage(now=NOW, zone=STOCKHOLM, per_agent=4)

    assert cell_at(report, "sv", datetime(2026, 3, 23, 10, 0)) == Cell(
        agents=1, demand=Fraction(6, 4), needed=1
    )
    assert cell_at(report, "en", datetime(2026, 3, 24, 14, 0)) == Cell(
        agents=1, demand=Fraction(9, 4), needed=1
    )
    assert cell_at(report, "en", datetime(2026, 3, 25, 2, 0)) == Cell(
        agents=0, demand=Fraction(1, 4), needed=1
    )
    # Matched by the wall clock: 03:00 summer time is 01:00 UTC, a week earlier 02:00 UTC.
    assert cell_at(report, "sv", datetime(2026, 3, 29, 3, 0)) == Cell(
        agents=1, demand=Fraction(1), needed=1
    )
    assert cell_at(report, "en", datetime(2026, 3, 23, 9, 0)) == Cell(
        agents=0, demand=Fraction(0), needed=0
    )
    assert cell_at(report, "en", datetime(2026, 3, 30, 9, 0)) == Cell(
        agents=0, demand=Fraction(2, 4), needed=1
    )
    demanded = sum(1 for slot in report.slots for cell in slot.cells.values() if cell.demand)
    assert demanded == 5


def test_gaps_are_hours_with_demand_and_too_few_agents(known_data):
    report = coverage(now=NOW, zone=STOCKHOLM, per_agent=4)
    gaps = [
        (slot.start.replace(tzinfo=None), language)
        for slot in report.slots
        for language, cell in slot.cells.items()
        if cell.gap
    ]

    assert gaps == [(datetime(2026, 3, 25, 2, 0), "en"), (datetime(2026, 3, 30, 9, 0), "en")]
    assert report.gaps == 2


def test_fewer_escalations_per_agent_need_more_agents(known_data):
    report = coverage(now=NOW, zone=STOCKHOLM, per_agent=2)

    # 2.25 an hour at 2 per agent needs 2 agents; Bob alone is short.
    assert cell_at(report, "en", datetime(2026, 3, 24, 14, 0)) == Cell(
        agents=1, demand=Fraction(9, 4), needed=2
    )
    assert report.gaps == 3


def test_a_coordinator_elsewhere_sees_the_same_hours_at_their_own_time(known_data):
    new_york = zoneinfo.ZoneInfo("America/New_York")

    report = coverage(now=NOW, zone=new_york, per_agent=4)

    # Bob's Tuesday 09:00 is 09:00 in New York; Ann's Monday 09:00 Stockholm is 04:00 there.
    assert report.slots[0].start == datetime(2026, 3, 23, 4, 0, tzinfo=new_york)
    assert [
        slot.start.replace(tzinfo=None) for slot in report.slots if slot.cells["en"].agents
    ] == [datetime(2026, 3, 24, 9, 0)]
    # Demand is read by the coordinator's clock too: the Tuesday tickets came at 09:10 and
    # 09:59 in New York (14:10 and 14:59 in Stockholm, then an hour closer than now).
    assert cell_at(report, "en", datetime(2026, 3, 24, 9, 0)) == Cell(
        agents=1, demand=Fraction(9, 4), needed=1
    )


def test_the_calendar_has_a_row_per_day_and_a_column_per_hour(known_data):
    report = coverage(now=NOW, zone=STOCKHOLM, per_agent=4)

    days = report.days("sv")

    assert [day.isoformat() for day, _ in days] == [
        "2026-03-23",
        "2026-03-24",
        "2026-03-25",
        "2026-03-26",
        "2026-03-27",
        "2026-03-28",
        "2026-03-29",
        "2026-03-30",
    ]
    first, sunday, last = days[0][1], days[6][1], days[7][1]
    assert [cell is None for cell in first[:10]] == [True] * 9 + [False]
    # The hour the clocks skip stays empty.
    assert [cell is None for cell in sunday] == [False, False, True] + [False] * 21
    assert [cell.agents for cell in sunday[:4] if cell] == [1, 1, 1]
    assert [cell is None for cell in last] == [False] * 10 + [True] * 14


def test_availability_windows_become_instants_in_the_agents_zone(agent_factory):
    eve = agent_factory(time_zone="Europe/Stockholm")
    window(eve, SAT, "23:00", "23:59")
    window(eve, SUN, "00:00", "04:00")
    window(eve, SUN, "04:00", "05:00")

    instants = availability_instants(
        windows=list(eve.availability.all()),
        zone=STOCKHOLM,
        start=datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
        end=datetime(2026, 3, 29, 12, 0, tzinfo=UTC),
    )

    # Saturday night in winter time (UTC+1), Sunday morning across the change to UTC+2;
    # windows that touch are one.
    assert instants == [
        (datetime(2026, 3, 28, 22, 0, tzinfo=UTC), datetime(2026, 3, 28, 22, 59, tzinfo=UTC)),
        (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 3, 0, tzinfo=UTC)),
    ]


def test_coverage_takes_four_queries(known_data, django_assert_num_queries):
    with django_assert_num_queries(4):
        coverage(now=NOW, zone=STOCKHOLM, per_agent=4)


# The page


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="coordinator", is_staff=True))
    return client


def test_the_page_shows_a_calendar_per_language(staff_client, agent_factory):
    agent = agent_factory(languages=["sv"], time_zone="Europe/Stockholm")
    window(agent, MON, "09:00", "17:00")

    response = staff_client.get("/board/coverage/", {"tz": "Europe/Stockholm", "per_agent": 3})

    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["report"].zone.key == "Europe/Stockholm"
    assert response.context["report"].per_agent == 3
    assert [language for language, _ in response.context["calendars"]] == ["sv"]
    assert '<table class="coverage" data-language="sv">' in html
    assert '<p id="gap-count" class="big">0 gaps</p>' in html


def test_the_page_defaults_to_the_platform_zone(staff_client, settings):
    settings.TIME_ZONE = "Europe/Lisbon"

    response = staff_client.get("/board/coverage/")

    assert response.status_code == 200
    assert response.context["report"].zone.key == "Europe/Lisbon"
    assert response.context["report"].per_agent == 4


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            {"tz": "Mars/Olympus"},
            "tz",
            "Mars/Olympus is not a known time zone (e.g. Europe/Berlin).",
        ),
        ({"per_agent": "0"}, "per_agent", "Ensure this value is greater than or equal to 1."),
        ({"per_agent": "61"}, "per_agent", "Ensure this value is less than or equal to 60."),
        ({"per_agent": "many"}, "per_agent", "Enter a whole number."),
    ],
)
def test_a_bad_query_is_a_400_naming_the_field(staff_client, query, field, message):
    response = staff_client.get("/board/coverage/", query)

    assert response.status_code == 400
    assert response.context["form"].errors == {field: [message]}
    assert message in response.content.decode()
