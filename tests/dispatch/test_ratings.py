"""Each agent's ratings in the quality window, as routing reads them (AgentRatings): counted as
ratings arrive, moved with the window by the sweep, counted afresh where the window is new (by
the migration that brought the counts, or in a flushed database), and exact when a rating and
the window's move run at once."""

import threading
import time
from datetime import timedelta
from importlib import import_module
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from agents.models import Agent
from dispatch.models import AgentRatings, DispatchPolicy, RatingsWindow
from dispatch.selectors import agents_quality
from dispatch.services import dispatch_sweep, ratings_count_afresh, ratings_window_move
from tickets.models import Ticket
from tickets.services import ticket_set_csat

pytestmark = pytest.mark.django_db


def ratings(agent: Agent) -> tuple[int, int]:
    """The agent's (count, sum) as routing reads them."""
    row = AgentRatings.objects.filter(agent=agent).first()
    return (row.ratings_count, row.ratings_sum) if row else (0, 0)


def resolved(ticket_factory, agent: Agent, *, days_ago: float) -> Ticket:
    return ticket_factory(
        status=Ticket.Status.RESOLVED,
        agent=agent,
        resolved_at=timezone.now() - timedelta(days=days_ago),
    )


def rate(ticket: Ticket, score: int) -> None:
    ticket_set_csat(ticket_id=ticket.pk, score=score)


def set_window(days: int) -> DispatchPolicy:
    policy = DispatchPolicy.load()
    policy.quality_window_days = days
    policy.save()
    return policy


def test_ratings_count_as_they_arrive_and_a_new_score_replaces_the_old(agent, ticket_factory):
    # given
    first, second = (resolved(ticket_factory, agent, days_ago=2) for _ in range(2))

    # when
    rate(first, 5)
    rate(second, 4)
    rate(first, 2)

    # then
    assert ratings(agent) == (2, 6)


def test_a_rating_of_a_ticket_resolved_before_the_window_does_not_count(agent, ticket_factory):
    # given: the window is 30 days
    old = resolved(ticket_factory, agent, days_ago=31)

    # when
    rate(old, 1)

    # then
    assert ratings(agent) == (0, 0)
    assert agents_quality(agent_ids=[agent.pk], policy=DispatchPolicy.load())[agent.pk].ratings == 0


def test_ratings_leave_as_the_window_passes_them(agent_factory, ticket_factory):
    # given: one agent rated 10 and 20 days ago, another 25 days ago
    maja, bo = agent_factory(), agent_factory()
    rate(resolved(ticket_factory, maja, days_ago=10), 5)
    rate(resolved(ticket_factory, maja, days_ago=20), 3)
    rate(resolved(ticket_factory, bo, days_ago=25), 4)

    # when: seven days pass, so the 30-day window starts 23 days ago
    ratings_window_move(now=timezone.now() + timedelta(days=7), policy=DispatchPolicy.load())

    # then
    assert (ratings(maja), ratings(bo)) == ((2, 8), (0, 0))

    # when: four more days pass
    ratings_window_move(now=timezone.now() + timedelta(days=11), policy=DispatchPolicy.load())

    # then
    assert (ratings(maja), ratings(bo)) == ((1, 5), (0, 0))


def test_the_sweep_moves_the_window_to_the_policys_both_ways(agent, ticket_factory):
    # given
    rate(resolved(ticket_factory, agent, days_ago=10), 5)
    rate(resolved(ticket_factory, agent, days_ago=20), 3)

    # when: a coordinator shortens the window to 15 days
    set_window(15)
    before = timezone.now()
    dispatch_sweep()

    # then
    assert ratings(agent) == (1, 5)
    start = RatingsWindow.objects.get().start
    assert before - timedelta(days=15) <= start <= timezone.now() - timedelta(days=15)

    # when: and back to 30: the rating the window left comes back
    set_window(30)
    dispatch_sweep()

    # then
    assert ratings(agent) == (2, 8)


def test_a_rating_after_the_window_moved_is_judged_by_the_new_window(agent, ticket_factory):
    # given: the window shortened to 15 days
    ratings_window_move(now=timezone.now(), policy=set_window(15))

    # when: a ticket resolved 20 days ago is rated, then re-rated, then one 10 days ago
    twenty = resolved(ticket_factory, agent, days_ago=20)
    rate(twenty, 5)
    rate(twenty, 1)
    rate(resolved(ticket_factory, agent, days_ago=10), 4)

    # then
    assert ratings(agent) == (1, 4)

    # when: the window grows back to 30 days
    ratings_window_move(now=timezone.now(), policy=set_window(30))

    # then: the re-rated score, not the first, comes in
    assert ratings(agent) == (2, 5)


def test_a_database_without_a_window_counts_every_agents_ratings_afresh(
    agent_factory, ticket_factory
):
    # given: ratings written without the rating service, and no window (a flushed database)
    maja, bo = agent_factory(), agent_factory()
    for agent, days_ago, score in [(maja, 1, 5), (maja, 29, 4), (maja, 31, 1), (bo, 3, 2)]:
        Ticket.objects.filter(pk=resolved(ticket_factory, agent, days_ago=days_ago).pk).update(
            csat_score=score
        )
    RatingsWindow.objects.all().delete()
    AgentRatings.objects.all().delete()

    # when: the next rating finds no window
    rate(resolved(ticket_factory, bo, days_ago=2), 3)

    # then
    assert (ratings(maja), ratings(bo)) == ((2, 9), (2, 5))


def test_counting_afresh_replaces_the_counts_kept(agent_factory, ticket_factory):
    # given: counts that no longer match the tickets (rows written in bulk)
    maja, bo = agent_factory(), agent_factory()
    rate(resolved(ticket_factory, maja, days_ago=1), 5)
    Ticket.objects.filter(pk=resolved(ticket_factory, bo, days_ago=1).pk).update(csat_score=2)
    Ticket.objects.filter(pk=resolved(ticket_factory, bo, days_ago=40).pk).update(csat_score=1)
    AgentRatings.objects.filter(agent=maja).update(ratings_count=7, ratings_sum=30)

    # when
    ratings_count_afresh(now=timezone.now(), policy=DispatchPolicy.load())

    # then
    assert (ratings(maja), ratings(bo)) == ((1, 5), (1, 2))


def test_the_recount_command_counts_afresh_and_says_what_it_counted(agent_factory, ticket_factory):
    # given: counts that no longer match the tickets
    maja, bo = agent_factory(), agent_factory()
    rate(resolved(ticket_factory, maja, days_ago=1), 5)
    rate(resolved(ticket_factory, maja, days_ago=3), 4)
    rate(resolved(ticket_factory, bo, days_ago=2), 2)
    AgentRatings.objects.filter(agent=maja).update(ratings_count=0, ratings_sum=0)
    out = StringIO()

    # when
    call_command("recount_ratings", stdout=out)

    # then
    assert (ratings(maja), ratings(bo)) == ((2, 9), (1, 2))
    assert out.getvalue() == "Counted 3 ratings of 2 agents in the last 30 days.\n"


def test_a_sweep_that_finds_the_counts_below_the_tickets_says_how_to_recount(
    agent, ticket_factory, caplog
):
    # given: a rating 20 days ago that the counts lost, and a window shortened to 15 days, so
    # that taking the rating out would bring the agent's counts below zero
    rate(resolved(ticket_factory, agent, days_ago=20), 4)
    rate(resolved(ticket_factory, agent, days_ago=5), 5)
    AgentRatings.objects.filter(agent=agent).update(ratings_count=1, ratings_sum=3)
    start = RatingsWindow.objects.get().start
    set_window(15)

    # when
    dispatch_sweep()

    # then: the window stays, the counts are untouched, and the operator is told what to run
    assert RatingsWindow.objects.get().start == start
    assert ratings(agent) == (1, 3)
    assert "run `python manage.py recount_ratings` to count them anew" in caplog.text

    # when: the operator runs it, and the sweep comes round again
    call_command("recount_ratings", stdout=StringIO())
    dispatch_sweep()

    # then
    assert ratings(agent) == (1, 5)


def test_the_migration_counts_the_ratings_already_there_in_the_policys_window(
    agent_factory, ticket_factory
):
    # given: ratings from before the counts existed, and a 20-day window
    count_ratings = import_module("dispatch.migrations.0005_agent_ratings").count_ratings
    set_window(20)
    maja, bo = agent_factory(), agent_factory()
    for agent, days_ago, score in [(maja, 1, 5), (maja, 19, 3), (maja, 25, 1), (bo, 21, 2)]:
        Ticket.objects.filter(pk=resolved(ticket_factory, agent, days_ago=days_ago).pk).update(
            csat_score=score
        )
    RatingsWindow.objects.all().delete()
    AgentRatings.objects.all().delete()
    before = timezone.now()

    # when
    count_ratings(django_apps, None)

    # then
    assert (ratings(maja), ratings(bo)) == ((2, 8), (0, 0))
    start = RatingsWindow.objects.get(pk=1).start
    assert before - timedelta(days=20) <= start <= timezone.now() - timedelta(days=20)


def test_the_pool_mean_and_each_agents_quality_come_from_the_counts(agent_factory, ticket_factory):
    # given: 5 and 5 for Maja, 2 for Bo, none for Cy; five ratings' worth of the pool mean (4)
    maja, bo, cy = agent_factory(), agent_factory(), agent_factory()
    for agent, score in [(maja, 5), (maja, 5), (bo, 2)]:
        rate(resolved(ticket_factory, agent, days_ago=1), score)

    # when
    quality = agents_quality(agent_ids=[maja.pk, bo.pk, cy.pk], policy=DispatchPolicy.load())

    # then: (5 × 4 + 10) / 7, (5 × 4 + 2) / 6, and the pool mean itself
    assert [(round(quality[a.pk].csat, 6), quality[a.pk].ratings) for a in (maja, bo, cy)] == [
        (4.285714, 2),
        (3.666667, 1),
        (4.0, 0),
    ]


# -- a rating and the window's move at once ----------------------------------------------------


def in_thread(
    work, *, done: threading.Event, hold: threading.Event | None = None
) -> threading.Thread:
    """Run `work` in its own transaction on its own connection, keep the transaction open until
    `hold` is set (if given), then commit and set `done`."""

    def run() -> None:
        try:
            with transaction.atomic():
                work()
                if hold is not None:
                    hold.wait(timeout=30)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def move_the_window_days_on(days: int):
    return lambda: ratings_window_move(
        now=timezone.now() + timedelta(days=days), policy=DispatchPolicy.load()
    )


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_move_waits_for_a_rating_in_flight_and_takes_it_out(agent, ticket_factory):
    # given: a ticket resolved 20 days ago, rated in a transaction not yet committed
    ticket = resolved(ticket_factory, agent, days_ago=20)
    ratings_window_move(now=timezone.now(), policy=DispatchPolicy.load())
    commit, rated = threading.Event(), threading.Event()
    rating = in_thread(lambda: rate(ticket, 4), hold=commit, done=rated)
    wait_for_the_window_locked()

    # when: the window passes the ticket while the rating is in flight, which then commits
    moved = threading.Event()
    move = in_thread(move_the_window_days_on(15), done=moved)
    assert not moved.wait(timeout=0.5)
    commit.set()
    rating.join(timeout=30)
    move.join(timeout=30)

    # then: the move saw the rating and took it out
    assert moved.is_set()
    assert Ticket.objects.get(pk=ticket.pk).csat_score == 4
    assert ratings(agent) == (0, 0)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_rating_waits_for_a_move_in_flight_and_is_judged_by_its_window(agent, ticket_factory):
    # given: the window passing a ticket resolved 20 days ago, in a transaction not yet committed
    ticket = resolved(ticket_factory, agent, days_ago=20)
    ratings_window_move(now=timezone.now(), policy=DispatchPolicy.load())
    commit, moved = threading.Event(), threading.Event()
    move = in_thread(move_the_window_days_on(15), hold=commit, done=moved)
    wait_for_the_window_locked()

    # when: the ticket is rated meanwhile
    rated = threading.Event()
    rating = in_thread(lambda: rate(ticket, 4), done=rated)
    assert not rated.wait(timeout=0.5)
    commit.set()
    move.join(timeout=30)
    rating.join(timeout=30)

    # then: the rating waited for the move and did not count
    assert rated.is_set()
    assert Ticket.objects.get(pk=ticket.pk).csat_score == 4
    assert ratings(agent) == (0, 0)


def wait_for_the_window_locked() -> None:
    """Until another transaction holds the ratings' window row locked."""
    deadline = time.monotonic() + 10
    while True:
        with transaction.atomic():
            if not RatingsWindow.objects.select_for_update(skip_locked=True).exists():
                return
        assert time.monotonic() < deadline, "No transaction locked the ratings' window."
