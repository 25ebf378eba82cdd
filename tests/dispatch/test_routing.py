"""The routing engine's first cut, in-process: who gets a ticket, in what order, and what the
audit trail says about it. Celery tasks run eagerly after commit, so these tests use real
commits (`transaction=True`): every follow-up a service asks for runs as it would in a worker."""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent, AgentConnection
from agents.services import agent_set_status
from dispatch.models import DispatchPolicy, Offer
from dispatch.services import (
    OfferNotPending,
    dispatch_sweep,
    offer_accept,
    offer_decline,
    offer_expire,
    ticket_release,
    ticket_route,
)
from tests.factories import SkillFactory
from tickets.models import Ticket
from tickets.services import ticket_escalate, ticket_resolve

pytestmark = pytest.mark.django_db(transaction=True)

_external_ids = itertools.count(1)


def escalate(bot, *, language="en", skills=(), priority=Ticket.Priority.NORMAL) -> Ticket:
    """Escalate through the real service, so the routing task runs after commit."""
    ticket, created = ticket_escalate(
        integration=bot,
        external_id=f"routing-{next(_external_ids)}",
        language=language,
        customer_id="cust-1",
        skills=[SkillFactory(slug=slug) for slug in skills],
        priority=priority,
    )
    assert created
    ticket.refresh_from_db()
    return ticket


def events(ticket: Ticket) -> list[tuple]:
    """The ticket's audit trail: (kind, from_status, to_status, agent id)."""
    return list(ticket.events.values_list("kind", "from_status", "to_status", "agent"))


def offers(ticket: Ticket) -> list[tuple]:
    """The ticket's offers, oldest first: (agent id, status)."""
    return list(ticket.offers.order_by("created_at").values_list("agent", "status"))


def pending_offer(ticket: Ticket) -> Offer:
    return ticket.offers.get(status=Offer.Status.PENDING)


def ago(**kwargs):
    return timezone.now() - timedelta(**kwargs)


# -- who is eligible --------------------------------------------------------------------------


def test_ticket_goes_to_the_agent_who_speaks_its_language_and_has_every_skill(bot, agent_factory):
    # given: three routable agents; only one speaks Swedish and has both required skills
    agent_factory(online=True, languages=["en"], skills=["refunds", "billing"])
    agent_factory(online=True, languages=["sv"], skills=["refunds"])
    chosen = agent_factory(online=True, languages=["sv", "en"], skills=["refunds", "billing"])

    # when
    ticket = escalate(bot, language="sv", skills=["refunds", "billing"])

    # then
    assert ticket.status == Ticket.Status.OFFERED
    assert offers(ticket) == [(chosen.pk, Offer.Status.PENDING)]
    assert events(ticket) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", chosen.pk),
    ]


def test_ticket_waits_when_no_agent_speaks_its_language(bot, agent_factory):
    # given
    agent_factory(online=True, languages=["en"])

    # when
    ticket = escalate(bot, language="fi")

    # then
    assert ticket.status == Ticket.Status.QUEUED
    assert offers(ticket) == []
    assert events(ticket) == [("escalated", "", "queued", None)]


def test_a_stale_connection_does_not_count_as_connected(bot, agent_factory):
    # given: a 20 s heartbeat timeout; the longest idle agent's last heartbeat is 21 s old
    policy = DispatchPolicy.load()
    policy.heartbeat_timeout_seconds = 20
    policy.save()
    stale = agent_factory(online=True, idle_since=None)
    AgentConnection.objects.filter(agent=stale).update(last_heartbeat_at=ago(seconds=21))
    fresh = agent_factory(online=True, idle_since=ago(minutes=5))
    AgentConnection.objects.filter(agent=fresh).update(last_heartbeat_at=ago(seconds=19))

    # when
    ticket = escalate(bot)

    # then
    assert offers(ticket) == [(fresh.pk, Offer.Status.PENDING)]


def test_an_agent_with_only_a_stale_connection_gets_nothing(bot, agent_factory):
    # given
    agent = agent_factory(online=True)
    AgentConnection.objects.filter(agent=agent).update(last_heartbeat_at=ago(seconds=61))

    # when
    ticket = escalate(bot)
    made = dispatch_sweep()

    # then
    assert made == 0
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.QUEUED
    assert offers(ticket) == []


def test_an_agent_at_capacity_is_skipped_counting_assigned_tickets_and_pending_offers(
    bot, agent_factory
):
    # given: the longest idle agent holds one assigned ticket and one pending offer (capacity 2)
    full = agent_factory(online=True, capacity=2, idle_since=None)
    assigned = escalate(bot)
    offer_accept(offer_id=pending_offer(assigned).pk, agent=full)
    offered = escalate(bot)
    assert offers(offered) == [(full.pk, Offer.Status.PENDING)]
    other = agent_factory(online=True, capacity=2, idle_since=ago(hours=1))

    # when
    ticket = escalate(bot)

    # then
    assert offers(ticket) == [(other.pk, Offer.Status.PENDING)]


def test_a_full_agent_leaves_the_ticket_queued(bot, agent_factory):
    # given
    agent = agent_factory(online=True, capacity=1)
    first = escalate(bot)

    # when
    second = escalate(bot)

    # then
    assert offers(first) == [(agent.pk, Offer.Status.PENDING)]
    assert second.status == Ticket.Status.QUEUED
    assert offers(second) == []


def test_the_longest_idle_agent_wins_and_never_idle_counts_as_longest(bot, agent_factory):
    # given
    recent = agent_factory(online=True, idle_since=ago(hours=1))
    never = agent_factory(online=True, idle_since=None)
    oldest = agent_factory(online=True, idle_since=ago(hours=2))

    # when: each offer makes its agent the most recently busy
    tickets = [escalate(bot) for _ in range(4)]

    # then
    assert [offers(ticket) for ticket in tickets] == [
        [(never.pk, Offer.Status.PENDING)],
        [(oldest.pk, Offer.Status.PENDING)],
        [(recent.pk, Offer.Status.PENDING)],
        [(never.pk, Offer.Status.PENDING)],
    ]


@pytest.mark.parametrize(
    ("account_state", "status"),
    [
        (Agent.AccountState.SUSPENDED, Agent.Status.AVAILABLE),
        (Agent.AccountState.APPLICANT, Agent.Status.AVAILABLE),
        (Agent.AccountState.ACTIVE, Agent.Status.AWAY),
        (Agent.AccountState.ACTIVE, Agent.Status.OFFLINE),
    ],
)
def test_agents_not_active_and_available_are_never_chosen(
    bot, agent_factory, account_state, status
):
    # given: connected, matching, idle, but not routable
    agent = agent_factory(online=True, account_state=account_state)
    Agent.objects.filter(pk=agent.pk).update(status=status)

    # when
    ticket = escalate(bot)
    made = dispatch_sweep()

    # then
    assert made == 0
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.QUEUED
    assert offers(ticket) == []
    assert events(ticket) == [("escalated", "", "queued", None)]


# -- decline, expiry, accept ------------------------------------------------------------------


def test_a_declined_ticket_goes_to_the_next_agent_and_never_back(bot, agent_factory):
    # given
    first = agent_factory(online=True, idle_since=ago(hours=2))
    second = agent_factory(online=True, idle_since=ago(hours=1))
    ticket = escalate(bot)
    assert offers(ticket) == [(first.pk, Offer.Status.PENDING)]

    # when: both decline, and the sweep runs afterwards
    offer_decline(offer_id=pending_offer(ticket).pk, agent=first, reason="Not my area")
    ticket.refresh_from_db()
    offers_after_first_decline = offers(ticket)
    offer_decline(offer_id=pending_offer(ticket).pk, agent=second)
    made = dispatch_sweep()

    # then
    assert offers_after_first_decline == [
        (first.pk, Offer.Status.DECLINED),
        (second.pk, Offer.Status.PENDING),
    ]
    assert made == 0
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.QUEUED
    assert offers(ticket) == [
        (first.pk, Offer.Status.DECLINED),
        (second.pk, Offer.Status.DECLINED),
    ]
    assert ticket.offers.get(agent=first).decline_reason == "Not my area"
    assert events(ticket) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", first.pk),
        ("declined", "offered", "queued", first.pk),
        ("offered", "queued", "offered", second.pk),
        ("declined", "offered", "queued", second.pk),
    ]


def test_an_expired_offer_goes_to_the_next_agent_and_never_back(bot, agent_factory):
    # given
    first = agent_factory(online=True, idle_since=ago(hours=2))
    second = agent_factory(online=True, idle_since=ago(hours=1))
    ticket = escalate(bot)
    missed = pending_offer(ticket)
    Offer.objects.filter(pk=missed.pk).update(expires_at=ago(seconds=1))

    # when: the offer's timer fires
    expired = offer_expire(offer_id=missed.pk)

    # then
    assert expired is True
    missed.refresh_from_db()
    assert missed.status == Offer.Status.EXPIRED
    assert offers(ticket) == [
        (first.pk, Offer.Status.EXPIRED),
        (second.pk, Offer.Status.PENDING),
    ]

    # when: the second agent misses it too, and the sweep finds it
    Offer.objects.filter(pk=pending_offer(ticket).pk).update(expires_at=ago(seconds=1))
    made = dispatch_sweep()

    # then: nobody is left who has not missed it
    assert made == 0
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.QUEUED
    assert offers(ticket) == [
        (first.pk, Offer.Status.EXPIRED),
        (second.pk, Offer.Status.EXPIRED),
    ]
    assert events(ticket) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", first.pk),
        ("expired", "offered", "queued", first.pk),
        ("offered", "queued", "offered", second.pk),
        ("expired", "offered", "queued", second.pk),
    ]


def test_an_offer_still_in_time_does_not_expire(bot, agent):
    # given
    ticket = escalate(bot)
    offer = pending_offer(ticket)

    # when
    expired = offer_expire(offer_id=offer.pk)

    # then
    assert expired is False
    assert offers(ticket) == [(agent.pk, Offer.Status.PENDING)]


def test_the_timer_of_an_answered_offer_ends_at_one_read(bot, agent, django_assert_num_queries):
    # given: an offer accepted, whose timer fires once it is overdue
    ticket = escalate(bot)
    offer = pending_offer(ticket)
    offer_accept(offer_id=offer.pk, agent=agent)
    Offer.objects.filter(pk=offer.pk).update(expires_at=ago(seconds=1))

    # when
    with django_assert_num_queries(1):
        expired = offer_expire(offer_id=offer.pk)

    # then
    assert expired is False
    assert offers(ticket) == [(agent.pk, Offer.Status.ACCEPTED)]
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent) == (Ticket.Status.ASSIGNED, agent)


def test_accepting_an_overdue_offer_is_refused_before_the_timer_writes_the_expiry(bot, agent):
    # given
    ticket = escalate(bot)
    offer = pending_offer(ticket)
    Offer.objects.filter(pk=offer.pk).update(expires_at=ago(seconds=1))

    # when
    with pytest.raises(OfferNotPending) as refused:
        offer_accept(offer_id=offer.pk, agent=agent)

    # then
    assert str(refused.value) == "The offer is no longer pending (it is expired)."
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OFFERED
    assert offers(ticket) == [(agent.pk, Offer.Status.PENDING)]


def test_accepting_an_expired_offer_is_refused(bot, agent):
    # given
    ticket = escalate(bot)
    offer = pending_offer(ticket)
    Offer.objects.filter(pk=offer.pk).update(expires_at=ago(seconds=1))
    offer_expire(offer_id=offer.pk)

    # when
    with pytest.raises(OfferNotPending) as refused:
        offer_accept(offer_id=offer.pk, agent=agent)

    # then
    assert str(refused.value) == "The offer is no longer pending (it is expired)."
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.QUEUED
    assert ticket.agent is None


def test_accepting_a_declined_offer_is_refused(bot, agent):
    # given
    ticket = escalate(bot)
    offer = pending_offer(ticket)
    offer_decline(offer_id=offer.pk, agent=agent)

    # when
    with pytest.raises(OfferNotPending) as refused:
        offer_accept(offer_id=offer.pk, agent=agent)

    # then
    assert str(refused.value) == "The offer is no longer pending (it is declined)."
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.QUEUED
    assert events(ticket) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", agent.pk),
        ("declined", "offered", "queued", agent.pk),
    ]


def test_accepting_assigns_the_ticket(bot, agent):
    # given
    ticket = escalate(bot)
    offer = pending_offer(ticket)

    # when
    assigned = offer_accept(offer_id=offer.pk, agent=agent)

    # then
    ticket.refresh_from_db()
    assert (assigned.pk, ticket.status, ticket.agent) == (
        ticket.pk,
        Ticket.Status.ASSIGNED,
        agent,
    )
    assert offers(ticket) == [(agent.pk, Offer.Status.ACCEPTED)]
    assert events(ticket) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", agent.pk),
        ("assigned", "offered", "assigned", agent.pk),
    ]


# -- draining ---------------------------------------------------------------------------------


def test_an_agent_becoming_available_is_offered_the_best_waiting_tickets_up_to_capacity(
    bot, agent_factory
):
    # given: five tickets waiting seconds, far less than a priority's worth of aging, while the
    # only agent is away
    agent = agent_factory(online=True, capacity=3)
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.AWAY)
    waiting = {}
    for seconds, name, priority in [
        (50, "low", Ticket.Priority.LOW),
        (40, "normal-old", Ticket.Priority.NORMAL),
        (30, "urgent", Ticket.Priority.URGENT),
        (20, "high", Ticket.Priority.HIGH),
        (10, "normal-new", Ticket.Priority.NORMAL),
    ]:
        waiting[name] = escalate(bot, priority=priority)
        Ticket.objects.filter(pk=waiting[name].pk).update(created_at=ago(seconds=seconds))
    assert Ticket.objects.filter(status=Ticket.Status.QUEUED).count() == 5

    # when
    agent_set_status(agent=agent, status=Agent.Status.AVAILABLE)

    # then
    offered = Offer.objects.filter(agent=agent).order_by("created_at")
    assert [offer.ticket_id for offer in offered] == [
        waiting["urgent"].pk,
        waiting["high"].pk,
        waiting["normal-old"].pk,
    ]
    statuses = {name: Ticket.objects.get(pk=t.pk).status for name, t in waiting.items()}
    assert statuses == {
        "low": Ticket.Status.QUEUED,
        "normal-old": Ticket.Status.OFFERED,
        "urgent": Ticket.Status.OFFERED,
        "high": Ticket.Status.OFFERED,
        "normal-new": Ticket.Status.QUEUED,
    }
    assert events(waiting["urgent"]) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", agent.pk),
    ]
    assert events(waiting["low"]) == [("escalated", "", "queued", None)]


def test_draining_skips_tickets_the_agent_cannot_take(bot, agent_factory):
    # given: the agent is away; the older tickets need another language or a missing skill
    agent = agent_factory(online=True, languages=["en"], skills=["refunds"], capacity=2)
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.AWAY)
    swedish = escalate(bot, language="sv")
    needs_billing = escalate(bot, skills=["refunds", "billing"])
    fits = escalate(bot, skills=["refunds"])

    # when
    agent_set_status(agent=agent, status=Agent.Status.AVAILABLE)

    # then
    assert list(Offer.objects.values_list("ticket", "agent")) == [(fits.pk, agent.pk)]
    assert Ticket.objects.get(pk=swedish.pk).status == Ticket.Status.QUEUED
    assert Ticket.objects.get(pk=needs_billing.pk).status == Ticket.Status.QUEUED


def test_resolving_frees_capacity_and_the_next_waiting_ticket_is_offered(bot, agent_factory):
    # given: a full agent (capacity 1) and a ticket waiting behind it
    agent = agent_factory(online=True, capacity=1)
    first = escalate(bot)
    offer_accept(offer_id=pending_offer(first).pk, agent=agent)
    second = escalate(bot)
    assert second.status == Ticket.Status.QUEUED

    # when
    ticket_resolve(ticket_id=first.pk, agent=agent, outcome=Ticket.Outcome.SOLVED, note="Refunded")

    # then
    first.refresh_from_db()
    assert (first.status, first.outcome, first.resolution_note) == (
        Ticket.Status.RESOLVED,
        Ticket.Outcome.SOLVED,
        "Refunded",
    )
    assert offers(second) == [(agent.pk, Offer.Status.PENDING)]
    assert events(first) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", agent.pk),
        ("assigned", "offered", "assigned", agent.pk),
        ("resolved", "assigned", "resolved", agent.pk),
    ]
    assert events(second) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", agent.pk),
    ]


def test_a_released_ticket_is_requeued_and_offered_to_someone_else(bot, agent_factory):
    # given
    releaser = agent_factory(online=True, idle_since=ago(hours=2))
    ticket = escalate(bot)
    offer_accept(offer_id=pending_offer(ticket).pk, agent=releaser)
    other = agent_factory(online=True, idle_since=ago(hours=1))

    # when
    ticket_release(ticket_id=ticket.pk, agent=releaser, reason="Need a specialist")

    # then
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent) == (Ticket.Status.OFFERED, None)
    assert offers(ticket) == [
        (releaser.pk, Offer.Status.ACCEPTED),
        (other.pk, Offer.Status.PENDING),
    ]
    assert ticket.offers.get(agent=releaser).released_at is not None
    assert events(ticket) == [
        ("escalated", "", "queued", None),
        ("offered", "queued", "offered", releaser.pk),
        ("assigned", "offered", "assigned", releaser.pk),
        ("released", "assigned", "queued", releaser.pk),
        ("offered", "queued", "offered", other.pk),
    ]
    assert ticket.events.get(kind="released").detail == {"reason": "Need a specialist"}


def test_a_released_ticket_is_never_offered_back_to_the_releaser(bot, agent):
    # given
    ticket = escalate(bot)
    offer_accept(offer_id=pending_offer(ticket).pk, agent=agent)

    # when
    ticket_release(ticket_id=ticket.pk, agent=agent)
    made = dispatch_sweep()

    # then
    assert made == 0
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent) == (Ticket.Status.QUEUED, None)
    assert offers(ticket) == [(agent.pk, Offer.Status.ACCEPTED)]
    assert events(ticket)[-1] == ("released", "assigned", "queued", agent.pk)


# -- the sweep --------------------------------------------------------------------------------


def test_the_sweep_offers_a_queued_ticket_whose_routing_task_was_lost(ticket_factory, agent):
    # given: a ticket written without its routing task
    ticket = ticket_factory()

    # when
    made = dispatch_sweep()

    # then
    assert made == 1
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OFFERED
    assert offers(ticket) == [(agent.pk, Offer.Status.PENDING)]
    assert events(ticket) == [("offered", "queued", "offered", agent.pk)]


def test_the_sweep_serves_the_longest_idle_agent_first(ticket_factory, agent_factory):
    # given: one lost ticket, two agents who could take it; one has never had work
    agent_factory(online=True, idle_since=ago(hours=3))
    never = agent_factory(online=True, idle_since=None)
    ticket = ticket_factory()

    # when
    made = dispatch_sweep()

    # then
    assert made == 1
    assert offers(ticket) == [(never.pk, Offer.Status.PENDING)]


def test_ticket_route_ignores_a_ticket_that_is_no_longer_queued(bot, agent_factory):
    # given: a ticket already offered to one agent, and a second agent with room
    first = agent_factory(online=True, idle_since=ago(hours=2))
    ticket = escalate(bot)
    agent_factory(online=True, idle_since=ago(hours=1))

    # when: a duplicated routing task arrives
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer is None
    assert offers(ticket) == [(first.pk, Offer.Status.PENDING)]
