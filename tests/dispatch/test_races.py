"""Races against invariants 1 and 2, on PostgreSQL row locks.

Threads route, drain, accept and decline the same tickets at once; the assertions are about
the final state only. Test settings run Celery tasks eagerly on commit, so each thread also
runs the follow-up routing its services ask for, inline: more racing, not less.
"""

import contextlib
import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from dispatch.models import Offer
from dispatch.selectors import agent_load
from dispatch.services import (
    OfferNotPending,
    agent_drain,
    dispatch_sweep,
    offer_accept,
    offer_decline,
    ticket_route,
)
from tickets.models import Ticket

from .invariants import assert_invariants

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

TICKETS = 40
AGENTS = 10
CAPACITY = 2
ROUTERS = 4
DRAINERS = 4
ACCEPTORS = 2
DECLINERS = 1
ROUNDS = 3
DECLINABLE = 8


def run_together(workers: list) -> list[BaseException]:
    """Start every worker at the same instant; return what any of them raised."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(work) -> None:
        try:
            barrier.wait(timeout=30)
            work()
        except BaseException as exc:  # reported by the test, not swallowed
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    return errors


@pytest.fixture
def pool(agent_factory, ticket_factory, bot):
    """TICKETS queued tickets (written without routing tasks) and AGENTS routable agents."""
    agents = [
        agent_factory(online=True, capacity=CAPACITY, display_name=f"Racer {n}")
        for n in range(AGENTS)
    ]
    tickets = [ticket_factory(integration=bot) for _ in range(TICKETS)]
    return agents, tickets


def test_concurrent_routing_accepting_and_declining_keep_invariants_1_and_2(pool):
    # given
    agents, tickets = pool
    ticket_ids = [ticket.pk for ticket in tickets]
    agent_ids = [agent.pk for agent in agents]
    # Declines hit only these, so each agent declines at most DECLINABLE tickets and the
    # remaining queue can always fill every agent.
    declinable = set(ticket_ids[:DECLINABLE])

    finished: list[int] = []
    finished_lock = threading.Lock()
    routing_done = threading.Event()

    def routing_finished() -> None:
        # The last router or drainer to finish tells the responders to make a final pass.
        with finished_lock:
            finished.append(1)
            if len(finished) == ROUTERS + DRAINERS:
                routing_done.set()

    def router(seed: int):
        def work() -> None:
            try:
                order = random.Random(seed).sample(ticket_ids, len(ticket_ids))
                for _ in range(ROUNDS):
                    for ticket_id in order:
                        ticket_route(ticket_id=ticket_id)
            finally:
                routing_finished()

        return work

    def drainer(seed: int):
        def work() -> None:
            try:
                order = random.Random(seed).sample(agent_ids, len(agent_ids))
                for _ in range(ROUNDS):
                    for agent_id in order:
                        agent_drain(agent_id=agent_id)
            finally:
                routing_finished()

        return work

    def responder(answer, seed: int):
        """Answer pending offers as they appear, racing the other responders for them."""

        def work() -> None:
            chooser = random.Random(seed)
            while True:
                # Keep answering while offers are being made, then one last pass.
                last_pass = routing_done.is_set()
                pending = list(
                    Offer.objects.filter(status=Offer.Status.PENDING).select_related("agent")
                )
                chooser.shuffle(pending)
                for offer in pending:
                    # Another thread may have answered it first, or the ticket moved on.
                    with contextlib.suppress(OfferNotPending):
                        answer(offer)
                if last_pass:
                    return

        return work

    def accept(offer: Offer) -> None:
        offer_accept(offer_id=offer.pk, agent=offer.agent)

    def decline(offer: Offer) -> None:
        if offer.ticket_id in declinable:
            offer_decline(offer_id=offer.pk, agent=offer.agent, reason="race")

    workers = (
        [router(n) for n in range(ROUTERS)]
        + [drainer(100 + n) for n in range(DRAINERS)]
        + [responder(accept, 200 + n) for n in range(ACCEPTORS)]
        + [responder(decline, 300 + n) for n in range(DECLINERS)]
    )

    # when
    unexpected = run_together(workers)

    # then
    assert unexpected == []
    assert_invariants()

    # and, once the sweep has repaired whatever a skipped lock left behind, every agent is full
    # (40 tickets are more than 10 agents x 2 can hold, even without the ones each declined)
    dispatch_sweep()
    assert_invariants()
    assert sorted(agent_load(agent=agent) for agent in agents) == [CAPACITY] * AGENTS
    assert Ticket.objects.exclude(status=Ticket.Status.QUEUED).count() == AGENTS * CAPACITY


def test_racing_routers_give_one_agent_no_more_than_its_capacity(agent_factory, ticket_factory):
    # given: one agent with room for two, twenty lost tickets
    agent = agent_factory(online=True, capacity=CAPACITY)
    ticket_ids = [ticket_factory().pk for _ in range(20)]

    def router(seed: int):
        def work() -> None:
            for ticket_id in random.Random(seed).sample(ticket_ids, len(ticket_ids)):
                ticket_route(ticket_id=ticket_id)
            agent_drain(agent_id=agent.pk)

        return work

    # when
    unexpected = run_together([router(n) for n in range(8)])

    # then
    assert unexpected == []
    assert agent_load(agent=agent) == CAPACITY
    assert Offer.objects.filter(agent=agent, status=Offer.Status.PENDING).count() == CAPACITY
    assert Ticket.objects.filter(status=Ticket.Status.OFFERED).count() == CAPACITY
    assert Ticket.objects.filter(status=Ticket.Status.QUEUED).count() == 20 - CAPACITY


def test_racing_answers_to_one_offer_have_exactly_one_winner(agent_factory, ticket_factory):
    # given: ten offers, each answered at once by four accepting and four declining threads
    agent = agent_factory(online=True, capacity=10)
    for _ in range(10):
        ticket_factory()
    dispatch_sweep()
    offer_ids = list(Offer.objects.filter(status=Offer.Status.PENDING).values_list("pk", flat=True))
    assert len(offer_ids) == 10
    wins = Counter()

    def answer(action: str):
        def work() -> None:
            for offer_id in offer_ids:
                try:
                    if action == "accept":
                        offer_accept(offer_id=offer_id, agent=agent)
                    else:
                        offer_decline(offer_id=offer_id, agent=agent)
                except OfferNotPending:
                    continue
                wins[offer_id] += 1

        return work

    # when
    unexpected = run_together([answer("accept")] * 4 + [answer("decline")] * 4)

    # then
    assert unexpected == []
    assert wins == dict.fromkeys(offer_ids, 1)
    for offer in Offer.objects.filter(pk__in=offer_ids).select_related("ticket"):
        expected_ticket_status = {
            Offer.Status.ACCEPTED: Ticket.Status.ASSIGNED,
            Offer.Status.DECLINED: Ticket.Status.QUEUED,
        }[offer.status]
        assert offer.ticket.status == expected_ticket_status
        assert list(offer.ticket.events.values_list("kind", flat=True)) == [
            "offered",
            "assigned" if offer.status == Offer.Status.ACCEPTED else "declined",
        ]
    assert_invariants()


@pytest.mark.parametrize(
    ("held_status", "released", "second_allowed"),
    [
        (Offer.Status.PENDING, False, False),
        (Offer.Status.ACCEPTED, False, False),
        (Offer.Status.ACCEPTED, True, True),
        (Offer.Status.DECLINED, False, True),
        (Offer.Status.EXPIRED, False, True),
        (Offer.Status.REVOKED, False, True),
    ],
)
def test_the_database_allows_one_holding_offer_per_ticket(
    agent_factory, ticket_factory, held_status, released, second_allowed
):
    # given: a ticket with one offer in the given state
    first, second = agent_factory(), agent_factory()
    ticket = ticket_factory()
    expires_at = timezone.now() + timedelta(seconds=30)
    Offer.objects.create(
        ticket=ticket,
        agent=first,
        status=held_status,
        expires_at=expires_at,
        released_at=timezone.now() if released else None,
    )

    # when / then: a second pending offer, written past every service
    if second_allowed:
        Offer.objects.create(ticket=ticket, agent=second, expires_at=expires_at)
        assert ticket.offers.count() == 2
    else:
        with pytest.raises(IntegrityError), transaction.atomic():
            Offer.objects.create(ticket=ticket, agent=second, expires_at=expires_at)
        assert list(ticket.offers.values_list("agent", flat=True)) == [first.pk]
