"""estimated_wait_seconds: queue position / the last hour's assignment rate of tickets of the
same language whose skills include all of this ticket's skills (from its latest assignments in
a busy hour); null without such history."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tickets import selectors
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def assigned(ticket_factory, bot):
    """A ticket first assigned `minutes_ago`, with the given language and skills."""

    def create(*, language: str, skills: list[str], minutes_ago: int):
        when = timezone.now() - timedelta(minutes=minutes_ago)
        return ticket_factory(
            integration=bot,
            language=language,
            skills=skills,
            status=Ticket.Status.RESOLVED,
            assigned_at=when,
            first_assigned_at=when,
        )

    return create


def estimate(bot_client, ticket: Ticket) -> tuple[int | None, int | None]:
    body = bot_client.get(f"/api/v1/tickets/{ticket.id}/").json()
    return body["queue_position"], body["estimated_wait_seconds"]


def test_the_wait_is_estimated_from_tickets_of_the_same_language_and_skills(
    bot_client, bot, ticket_factory, assigned
):
    # given a waiting Swedish refunds ticket
    ticket = ticket_factory(integration=bot, language="sv", skills=["refunds"])
    # and in the last hour three Swedish tickets needing refunds (one also billing) assigned,
    assigned(language="sv", skills=["refunds"], minutes_ago=5)
    assigned(language="sv", skills=["refunds"], minutes_ago=30)
    assigned(language="sv", skills=["refunds", "billing"], minutes_ago=59)
    # but not counted: other skills, another language, and too long ago
    assigned(language="sv", skills=["billing"], minutes_ago=10)
    assigned(language="sv", skills=[], minutes_ago=10)
    assigned(language="en", skills=["refunds"], minutes_ago=10)
    assigned(language="sv", skills=["refunds"], minutes_ago=61)

    # when / then: first in line, at 3 per 3,600 s
    assert estimate(bot_client, ticket) == (1, 1200)


def test_the_estimate_grows_with_the_place_in_the_queue(bot_client, bot, ticket_factory, assigned):
    # given three waiting Swedish refunds tickets and two assigned in the last hour
    tickets = [ticket_factory(integration=bot, language="sv", skills=["refunds"]) for _ in "abc"]
    assigned(language="sv", skills=["refunds"], minutes_ago=1)
    assigned(language="sv", skills=["refunds", "billing"], minutes_ago=2)

    # when / then
    assert [estimate(bot_client, ticket) for ticket in tickets] == [
        (1, 1800),
        (2, 3600),
        (3, 5400),
    ]


def test_a_ticket_needing_two_skills_counts_only_tickets_that_needed_both(
    bot_client, bot, ticket_factory, assigned
):
    # given a waiting ticket needing refunds and billing
    ticket = ticket_factory(integration=bot, language="sv", skills=["refunds", "billing"])
    assigned(language="sv", skills=["billing", "refunds"], minutes_ago=1)
    assigned(language="sv", skills=["billing", "refunds", "technical"], minutes_ago=1)
    assigned(language="sv", skills=["refunds"], minutes_ago=1)
    assigned(language="sv", skills=["billing"], minutes_ago=1)

    # when / then: 2 per 3,600 s
    assert estimate(bot_client, ticket) == (1, 1800)


def test_a_busy_hour_is_read_from_its_latest_assignments_only(
    bot_client, bot, ticket_factory, assigned, monkeypatch
):
    # given a sample of the latest 3 assignments, and a waiting ticket with 5 like tickets
    # assigned in the hour: 1, 2, 3, 6 and 50 minutes ago
    monkeypatch.setattr(selectors, "RATE_SAMPLE", 3)
    ticket = ticket_factory(integration=bot, language="sv", skills=["refunds"])
    for minutes_ago in (1, 2, 3, 6, 50):
        assigned(language="sv", skills=["refunds"], minutes_ago=minutes_ago)

    # when / then: the latest 3 came in the 360 s since the one before them, not 5 in 3,600 s
    assert estimate(bot_client, ticket) == (1, 120)


def test_without_history_there_is_no_estimate(bot_client, bot, ticket_factory, assigned):
    # given only assignments of other skill sets, languages, or older than an hour
    ticket = ticket_factory(integration=bot, language="sv", skills=["refunds"])
    assigned(language="sv", skills=["billing"], minutes_ago=1)
    assigned(language="en", skills=["refunds"], minutes_ago=1)
    assigned(language="sv", skills=["refunds"], minutes_ago=90)

    # when / then
    assert estimate(bot_client, ticket) == (1, None)


def test_a_ticket_no_longer_waiting_has_no_estimate(bot_client, bot, ticket_factory, assigned):
    # given an assigned ticket, with plenty of history
    ticket = ticket_factory(integration=bot, language="sv", status=Ticket.Status.ASSIGNED)
    assigned(language="sv", skills=[], minutes_ago=1)

    # when / then
    assert estimate(bot_client, ticket) == (None, None)
