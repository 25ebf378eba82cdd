"""Missed offers and draining: an agent who lets offers expire is set away and told so live, and
whenever capacity appears the waiting tickets that agent can take are offered at once.

Celery tasks run eagerly after commit, so these tests commit for real (`transaction=True`):
every follow-up a service asks for runs as in a worker, and no sweep is involved."""

import asyncio
import itertools
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from agents.models import Agent, AgentConnection, AgentLanguage
from agents.push import agent_group
from dispatch.models import Offer
from dispatch.presence import agent_connect
from dispatch.services import offer_accept, offer_decline, offer_expire
from tickets.models import Ticket
from tickets.services import ticket_escalate

pytestmark = pytest.mark.django_db(transaction=True)

_external_ids = itertools.count(1)
FRAME_TIMEOUT_SECONDS = 5


def escalate(bot, *, language="en") -> Ticket:
    ticket, _ = ticket_escalate(
        integration=bot,
        external_id=f"misses-{next(_external_ids)}",
        language=language,
        customer_id="cust-1",
    )
    ticket.refresh_from_db()
    return ticket


def pending_offer(ticket: Ticket) -> Offer:
    return ticket.offers.get(status=Offer.Status.PENDING)


def overdue(offer: Offer) -> Offer:
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return offer


class AgentFrames:
    """Listens on an agent's channel-layer group, as each of the agent's sockets does."""

    def __init__(self, agent: Agent) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(agent_group(agent.pk), self.channel)

    def next(self) -> dict:
        async def receive():
            return await asyncio.wait_for(self.layer.receive(self.channel), FRAME_TIMEOUT_SECONDS)

        return async_to_sync(receive)()["payload"]


def revoked(offer: Offer) -> dict:
    return {"type": "offer.revoked", "offer_id": str(offer.pk), "reason": "expired"}


# -- misses ------------------------------------------------------------------------------------


def test_after_three_misses_in_a_row_the_agent_is_set_away_and_told_live(bot, agent_factory):
    # given: three offers out to one agent (the policy allows three misses)
    agent = agent_factory(online=True, capacity=3)
    offers = [pending_offer(escalate(bot)) for _ in range(3)]
    frames = AgentFrames(agent)

    # when: all three expire unanswered
    for offer in offers:
        offer_expire(offer_id=overdue(offer).pk)

    # then
    agent.refresh_from_db()
    assert (agent.status, agent.consecutive_misses) == (Agent.Status.AWAY, 0)
    assert [frames.next() for _ in range(4)] == [
        revoked(offers[0]),
        revoked(offers[1]),
        revoked(offers[2]),
        {"type": "status", "status": "away"},
    ]


def test_an_answer_ends_a_run_of_misses(bot, agent_factory):
    # given: four offers out to one agent
    agent = agent_factory(online=True, capacity=4)
    offers = [pending_offer(escalate(bot)) for _ in range(4)]

    # when: two misses, a decline, one more miss
    offer_expire(offer_id=overdue(offers[0]).pk)
    offer_expire(offer_id=overdue(offers[1]).pk)
    offer_decline(offer_id=offers[2].pk, agent=agent)
    offer_expire(offer_id=overdue(offers[3]).pk)

    # then
    agent.refresh_from_db()
    assert (agent.status, agent.consecutive_misses) == (Agent.Status.AVAILABLE, 1)


def test_misses_while_away_do_not_count(bot, agent_factory):
    # given: three offers out, then the agent steps away
    agent = agent_factory(online=True, capacity=3)
    offers = [pending_offer(escalate(bot)) for _ in range(3)]
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.AWAY)

    # when
    for offer in offers:
        offer_expire(offer_id=overdue(offer).pk)

    # then
    agent.refresh_from_db()
    assert (agent.status, agent.consecutive_misses) == (Agent.Status.AWAY, 0)


# -- draining as capacity appears --------------------------------------------------------------


def test_an_expired_offer_frees_the_slot_for_the_next_waiting_ticket(bot, agent_factory):
    # given: one slot, taken by the first ticket; the second waits
    agent = agent_factory(online=True, capacity=1)
    first = escalate(bot)
    second = escalate(bot)
    assert second.status == Ticket.Status.QUEUED

    # when
    offer_expire(offer_id=overdue(pending_offer(first)).pk)

    # then: the missed ticket waits for someone else, the next one is offered at once
    assert pending_offer(second).agent == agent
    assert Ticket.objects.get(pk=first.pk).status == Ticket.Status.QUEUED


def test_a_decline_frees_the_slot_for_the_next_waiting_ticket(bot, agent_factory):
    # given
    agent = agent_factory(online=True, capacity=1)
    first = escalate(bot)
    second = escalate(bot)

    # when
    offer_decline(offer_id=pending_offer(first).pk, agent=agent)

    # then
    assert pending_offer(second).agent == agent


def test_accepting_with_room_to_spare_drains_what_became_takeable(bot, agent_factory):
    # given: a Swedish ticket that has waited past the language step, never routed since, and
    # an agent with two slots who speaks Swedish as a secondary language
    agent = agent_factory(online=True, capacity=2, languages=["en"])
    AgentLanguage.objects.create(agent=agent, code="sv", is_primary=False)
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.AWAY)
    swedish = escalate(bot, language="sv")
    Ticket.objects.filter(pk=swedish.pk).update(created_at=timezone.now() - timedelta(minutes=6))
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.AVAILABLE)
    english = escalate(bot)

    # when
    offer_accept(offer_id=pending_offer(english).pk, agent=agent)

    # then
    assert pending_offer(swedish).agent == agent


def test_an_available_agent_who_reconnects_is_offered_the_waiting_tickets(bot, agent_factory):
    # given: an available agent whose only connection is gone, and a ticket waiting meanwhile
    agent = agent_factory(online=True)
    AgentConnection.objects.filter(agent=agent).delete()
    ticket = escalate(bot)
    assert ticket.status == Ticket.Status.QUEUED

    # when
    agent_connect(agent=agent, channel_name="reconnected")

    # then
    assert pending_offer(ticket).agent == agent
