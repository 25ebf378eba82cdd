"""The sweep as real processes run it: Celery beat ticks, a routing worker runs the sweep, and a
ticket whose routing message never existed is offered."""

import pytest

from dispatch.models import Offer
from tests.live import running_platform, wait_for
from tickets.models import Ticket

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# The platform's beat sweeps every second; this only bounds how long a failure takes to show.
GIVE_UP_AFTER_SECONDS = 15


@pytest.fixture
def platform(transactional_db, tmp_path):
    """The platform for this test alone: it stops before the test database is flushed, so its
    sweeps never race the flush (a TRUNCATE and a sweep's query can deadlock on PostgreSQL)."""
    yield from running_platform(tmp_path)


def test_beat_and_a_worker_offer_a_ticket_whose_routing_message_was_lost(
    platform, agent_factory, ticket_factory
):
    # given: a connected, available agent, and a ticket written without its routing task
    agent = agent_factory(online=True)
    ticket = ticket_factory()

    # when: nothing but the platform runs
    offered = wait_for(
        lambda: Ticket.objects.filter(pk=ticket.pk, status=Ticket.Status.OFFERED).exists(),
        timeout=GIVE_UP_AFTER_SECONDS,
        what="the sweep to offer the ticket",
    )

    # then
    assert offered
    assert list(ticket.offers.values_list("agent", "status")) == [(agent.pk, Offer.Status.PENDING)]
    assert list(ticket.events.values_list("kind", "agent")) == [("offered", agent.pk)]
