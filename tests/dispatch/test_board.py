"""The coordinators' live board: every figure against a known data set at a fixed moment, the
query count, the history samples, and who may see the pages."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.models import Agent, AgentConnection
from dispatch.board import (
    Durations,
    QualityRow,
    QueueRow,
    board_figures,
    board_history,
    percentile,
)
from dispatch.celery import app as celery_app
from dispatch.models import BoardSample, DispatchPolicy, Offer
from dispatch.services import board_sample_take
from tests.factories import UserFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)


def ticket_at(ticket_factory, *, created: timedelta, **fields) -> Ticket:
    """A ticket escalated `created` before NOW; other times are given as offsets before NOW."""
    times = {
        name: NOW - fields.pop(name)
        for name in ("first_assigned_at", "resolved_at", "cancelled_at", "sla_breached_at")
        if name in fields
    }
    ticket = ticket_factory(**fields)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=NOW - created, **times)
    ticket.refresh_from_db()
    return ticket


def connect(agent: Agent, *, heartbeat_ago: timedelta) -> None:
    AgentConnection.objects.create(
        agent=agent, channel_name=f"board-{agent.pk}", last_heartbeat_at=NOW - heartbeat_ago
    )


def offer(ticket: Ticket, agent: Agent, status: str, *, responded_ago: timedelta | None) -> Offer:
    return Offer.objects.create(
        ticket=ticket,
        agent=agent,
        status=status,
        expires_at=NOW + MIN,
        responded_at=None if responded_ago is None else NOW - responded_ago,
    )


@pytest.fixture
def known_data(agent_factory, ticket_factory):
    """Agents in every state and tickets in every state, some inside the windows, some out."""
    ann = agent_factory(status=Agent.Status.AVAILABLE, capacity=3, pay_rate=Decimal("5.00"))
    ben = agent_factory(status=Agent.Status.AWAY, capacity=2, pay_rate=Decimal("3.00"))
    # Available but its only connection is stale (the policy's time-out is 60 s): not online.
    cat = agent_factory(status=Agent.Status.AVAILABLE, capacity=4)
    dan = agent_factory(status=Agent.Status.OFFLINE, capacity=2)
    # Suspended agents count nowhere, connected or not.
    eve = agent_factory(
        status=Agent.Status.AVAILABLE, account_state=Agent.AccountState.SUSPENDED, capacity=5
    )
    connect(ann, heartbeat_ago=10 * S)
    connect(ben, heartbeat_ago=59 * S)
    connect(cat, heartbeat_ago=61 * S)
    connect(eve, heartbeat_ago=1 * S)

    queued = Ticket.Status.QUEUED
    waiting_en = ticket_at(
        ticket_factory,
        created=300 * S,
        language="en",
        skills=["refunds"],
        sla_breached=True,
        sla_breached_at=10 * S,
    )
    offered_en = ticket_at(
        ticket_factory,
        created=100 * S,
        status=Ticket.Status.OFFERED,
        language="en",
        skills=["refunds", "billing"],
    )
    ticket_at(ticket_factory, created=50 * S, status=queued, language="sv")
    held_by_ann = ticket_at(
        ticket_factory,
        created=1000 * S,
        first_assigned_at=940 * S,
        status=Ticket.Status.ASSIGNED,
        agent=ann,
        language="en",
        skills=["billing"],
    )
    held_by_ben = ticket_at(
        ticket_factory,
        created=30 * MIN,
        first_assigned_at=30 * MIN - 10 * S,
        status=Ticket.Status.ASSIGNED,
        agent=ben,
    )
    resolved = Ticket.Status.RESOLVED
    ticket_at(
        ticket_factory,
        created=50 * MIN,
        first_assigned_at=50 * MIN - 20 * S,
        resolved_at=20 * MIN,
        status=resolved,
        agent=ann,
        language="en",
        csat_score=5,
        sla_breached=True,
        sla_breached_at=49 * MIN,
    )
    ticket_at(
        ticket_factory,
        created=45 * MIN,
        first_assigned_at=45 * MIN - 40 * S,
        resolved_at=10 * MIN,
        status=resolved,
        agent=ben,
        language="sv",
        csat_score=2,
    )
    # Resolved within 24 hours but not within the hour: quality and cost only.
    ticket_at(
        ticket_factory,
        created=5 * H,
        first_assigned_at=5 * H - 30 * S,
        resolved_at=3 * H,
        status=resolved,
        agent=ben,
        language="en",
    )
    # Older than every window.
    ticket_at(
        ticket_factory,
        created=31 * H,
        first_assigned_at=31 * H - 5 * S,
        resolved_at=30 * H,
        status=resolved,
        agent=ann,
        language="en",
        csat_score=1,
        sla_breached=True,
        sla_breached_at=31 * H - 1 * S,
    )
    cancelled = Ticket.Status.CANCELLED
    ticket_at(ticket_factory, created=10 * MIN, cancelled_at=5 * MIN, status=cancelled)
    ticket_at(ticket_factory, created=3 * H, cancelled_at=2 * H, status=cancelled)

    offer(offered_en, ann, Offer.Status.PENDING, responded_ago=None)
    offer(held_by_ann, ann, Offer.Status.ACCEPTED, responded_ago=940 * S)
    offer(held_by_ben, ben, Offer.Status.ACCEPTED, responded_ago=30 * MIN - 10 * S)
    offer(waiting_en, cat, Offer.Status.DECLINED, responded_ago=20 * MIN)
    offer(waiting_en, dan, Offer.Status.EXPIRED, responded_ago=5 * MIN)
    offer(waiting_en, ben, Offer.Status.EXPIRED, responded_ago=2 * H)
    offer(waiting_en, eve, Offer.Status.REVOKED, responded_ago=1 * MIN)


def test_every_figure_of_a_known_data_set(known_data, django_assert_num_queries):
    # given
    policy = DispatchPolicy.load()

    # when
    with django_assert_num_queries(8):
        figures = board_figures(now=NOW, policy=policy)

    # then
    assert figures.queue_depth == 3
    assert figures.queue_by_language == [QueueRow("en", 2, 300), QueueRow("sv", 1, 50)]
    assert figures.queue_by_skill == [QueueRow("billing", 1, 100), QueueRow("refunds", 2, 300)]
    assert figures.tickets_by_status == {
        "queued": 2,
        "offered": 1,
        "assigned": 2,
        "resolved": 2,
        "cancelled": 1,
    }
    assert (figures.sla_breached_open, figures.sla_breached_last_hour) == (1, 2)
    assert figures.agents_by_status == {"offline": 1, "available": 2, "away": 1}
    assert figures.agents_online == 2
    # Ann holds one assigned ticket and one pending offer, Ben one ticket; 3 + 2 places.
    assert (figures.held_by_online, figures.capacity_online) == (3, 5)
    assert figures.utilisation == 0.6
    assert figures.offers_last_hour == {"accepted": 2, "declined": 1, "expired": 1}
    # Waits of 10, 20, 40 and 60 s: nearest rank 2 of 4 is 20 s, rank 4 of 4 is 60 s.
    assert figures.time_to_assign == Durations(count=4, p50=20.0, p90=60.0)
    assert figures.time_to_resolve == Durations(count=2, p50=1800.0, p90=2100.0)
    assert figures.quality_by_language == [
        QualityRow("en", resolved=2, cost=Decimal("8.00"), rated=1, csat_sum=5),
        QualityRow("sv", resolved=1, cost=Decimal("3.00"), rated=1, csat_sum=2),
    ]
    assert [(row.cost_per_resolved, row.csat_mean) for row in figures.quality_by_language] == [
        (Decimal("4.00"), 5.0),
        (Decimal("3.00"), 2.0),
    ]
    total = figures.quality_total
    assert (total.resolved, total.cost, total.rated, total.csat_sum) == (3, Decimal("11.00"), 2, 7)
    assert (total.cost_per_resolved, total.csat_mean) == (Decimal("3.67"), 3.5)


def test_an_empty_platform_has_zeroes_and_no_made_up_times(db):
    figures = board_figures(now=NOW, policy=DispatchPolicy.load())

    assert figures.queue_depth == 0
    assert figures.queue_by_language == []
    assert figures.utilisation is None
    assert figures.time_to_assign == Durations(count=0, p50=None, p90=None)
    assert figures.quality_total.cost_per_resolved is None
    assert figures.quality_total.csat_mean is None


@pytest.mark.parametrize(
    ("percent", "expected"), [(5, 15), (30, 20), (40, 20), (50, 35), (90, 50), (100, 50)]
)
def test_percentiles_are_nearest_rank(percent, expected):
    # The textbook example of the nearest-rank method.
    assert percentile([50, 15, 40, 35, 20], percent) == expected


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


def test_a_sample_records_the_queue_and_the_agents_online_and_prunes_old_ones(
    agent_factory, ticket_factory
):
    # given: two waiting tickets, one resolved; one agent online, one offline; an old sample
    ticket_factory()
    ticket_factory(status=Ticket.Status.OFFERED)
    ticket_factory(status=Ticket.Status.RESOLVED)
    online = agent_factory(status=Agent.Status.AVAILABLE)
    connect(online, heartbeat_ago=5 * S)
    agent_factory(status=Agent.Status.OFFLINE)
    BoardSample.objects.create(taken_at=NOW - 49 * H, queue_depth=7, agents_online=7)
    kept = BoardSample.objects.create(taken_at=NOW - 47 * H, queue_depth=4, agents_online=1)

    # when
    sample = board_sample_take(now=NOW, policy=DispatchPolicy.load())

    # then
    assert (sample.taken_at, sample.queue_depth, sample.agents_online) == (NOW, 2, 1)
    assert list(BoardSample.objects.order_by("taken_at")) == [kept, sample]
    assert board_history(now=NOW, hours=6) == [sample]


def test_beat_takes_a_sample_every_minute(settings, ticket_factory):
    # given
    ticket_factory()
    entry = settings.CELERY_BEAT_SCHEDULE["board-sample"]

    # when: beat's tick runs the task
    celery_app.tasks[entry["task"]].apply().get()

    # then
    assert (entry["task"], entry["schedule"]) == ("dispatch.board_sample", 60.0)
    assert list(BoardSample.objects.values_list("queue_depth", "agents_online")) == [(1, 0)]


# The pages


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="coordinator", is_staff=True))
    return client


BOARD_URLS = ["/board/", "/board/figures/", "/board/charts/", "/board/coverage/"]


@pytest.mark.parametrize("url", BOARD_URLS)
def test_a_visitor_who_is_not_logged_in_gets_the_login_page(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_the_open_board_goes_to_the_login_page_when_its_session_has_ended(client):
    response = client.get(
        "/board/figures/",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/board/"},
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fboard%2F"


@pytest.mark.parametrize("url", BOARD_URLS)
def test_an_agent_is_refused(client, agent, url):
    client.force_login(agent.user)

    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", BOARD_URLS)
def test_a_deactivated_coordinator_is_logged_out(client, url):
    client.force_login(UserFactory(is_staff=True, is_active=False))

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


@pytest.mark.parametrize("url", BOARD_URLS)
def test_the_pages_only_answer_get(staff_client, url):
    assert staff_client.post(url).status_code == 405


def test_the_board_shows_the_figures_and_listens_on_the_board_socket(staff_client, ticket_factory):
    # given
    ticket_factory(language="sv", skills=["refunds"])
    ticket_factory(language="sv", status=Ticket.Status.ASSIGNED)

    # when
    response = staff_client.get("/board/")

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span id="queue-depth" data-figure="queue-depth">1</span>' in html
    assert '<dd data-figure="assigned">1</dd>' in html
    assert 'data-socket-path="/ws/board/"' in html
    assert 'hx-get="/board/figures/"' in html
    assert "/static/dispatch/board.js" in html


def test_the_figures_fragment_is_the_figures_alone(staff_client, ticket_factory):
    ticket_factory()
    ticket_factory()

    response = staff_client.get("/board/figures/")

    html = response.content.decode()
    assert response.status_code == 200
    assert '<span id="queue-depth" data-figure="queue-depth">2</span>' in html
    assert "<html" not in html


def test_the_charts_fragment_shows_both_charts_as_images(staff_client):
    response = staff_client.get("/board/charts/")

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<img src="/board/charts/queue.svg?at=') == 1
    assert html.count('<img src="/board/charts/agents.svg?at=') == 1


def y_labels(svg: str) -> list[str]:
    """The y axis' labels of a pygal chart, bottom up."""
    axis = svg[svg.index('class="axis y') :]
    axis = axis[: axis.index("</g></g>")]
    return re.findall(r'<text x="-5" y="[^"]+" class="[^"]*">([^<]+)</text>', axis)


@pytest.mark.parametrize(
    ("chart", "title", "labels"),
    [
        ("queue", "Tickets waiting", ["0", "1", "2", "3", "4", "5"]),
        ("agents", "Agents online", ["0", "1", "2", "3", "4"]),
    ],
)
def test_a_chart_draws_the_samples_of_the_last_six_hours(staff_client, chart, title, labels):
    # given: two samples in the window and one before it (with far higher values)
    now = timezone.now()
    BoardSample.objects.create(taken_at=now - 7 * H, queue_depth=50, agents_online=40)
    BoardSample.objects.create(taken_at=now - 2 * H, queue_depth=3, agents_online=2)
    BoardSample.objects.create(taken_at=now - 1 * H, queue_depth=5, agents_online=4)

    # when
    response = staff_client.get(f"/board/charts/{chart}.svg")

    # then: the axis runs from 0 to the highest sample in the window
    svg = response.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert f'class="title plot_title">{title}</text>' in svg
    assert y_labels(svg) == labels
    assert 'class="no_data"' not in svg


def test_a_chart_of_bigger_counts_keeps_about_five_whole_number_labels(staff_client):
    BoardSample.objects.create(taken_at=timezone.now() - H, queue_depth=12, agents_online=7)

    svg = staff_client.get("/board/charts/queue.svg").content.decode()

    assert y_labels(svg) == ["0", "3", "6", "9", "12"]


def test_a_chart_without_samples_says_so(staff_client):
    svg = staff_client.get("/board/charts/queue.svg").content.decode()

    assert re.findall(r"<text [^>]*>([^<]*)</text>", svg) == ["Tickets waiting", "No samples yet"]


def test_an_unknown_chart_is_404(staff_client):
    assert staff_client.get("/board/charts/revenue.svg").status_code == 404
