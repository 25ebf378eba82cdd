"""Who gets a ticket and in what order: the hard filters, the score, the relaxation steps and
the queue order with aging, each with the exact choice expected.

Tickets are written without their routing task and routed by calling the services, so each
test decides when routing happens; follow-up work after commit does not run here."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.models import Agent, AgentLanguage
from dispatch.candidates import waiting_ticket_ids_read
from dispatch.models import DispatchPolicy, Offer
from dispatch.selectors import agent_score_for, agents_ranked_for
from dispatch.services import agent_drain, ticket_route
from tickets.models import Ticket
from tickets.selectors import ticket_queue_position, tickets_waiting
from tickets.services import ticket_set_csat

pytestmark = pytest.mark.django_db


def ago(**kwargs):
    return timezone.now() - timedelta(**kwargs)


def waiting_since(ticket: Ticket, moment) -> Ticket:
    Ticket.objects.filter(pk=ticket.pk).update(created_at=moment)
    ticket.refresh_from_db()
    return ticket


def rated(ticket_factory, agent: Agent, *scores: int) -> None:
    """Tickets the agent resolved just now, rated with these scores."""
    for score in scores:
        resolved_ago(ticket_factory, agent, score, timedelta(0))


def resolved_ago(ticket_factory, agent: Agent, score: int, ago: timedelta) -> Ticket:
    """A ticket the agent resolved `ago`, rated `score` now."""
    ticket = ticket_factory(
        status=Ticket.Status.RESOLVED, agent=agent, resolved_at=timezone.now() - ago
    )
    return ticket_set_csat(ticket_id=ticket.pk, score=score)


def set_policy(**values) -> None:
    policy = DispatchPolicy.load()
    for name, value in values.items():
        setattr(policy, name, value)
    policy.full_clean()
    policy.save()


# -- hard filters ------------------------------------------------------------------------------


def test_a_suspended_agent_is_never_chosen_however_good(agent_factory, ticket_factory):
    # given: the suspended agent has perfect ratings, the other none
    suspended = agent_factory(online=True, account_state=Agent.AccountState.SUSPENDED)
    rated(ticket_factory, suspended, 5, 5, 5, 5, 5)
    ordinary = agent_factory(online=True)
    ticket = ticket_factory()

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer.agent == ordinary


def test_an_agent_below_the_minimum_proficiency_is_not_eligible(agent_factory, ticket_factory):
    # given: the policy asks for proficiency 3; the only agent has 2
    agent_factory(online=True, skills={"refunds": 2})
    ticket = waiting_since(ticket_factory(skills=["refunds"]), ago(seconds=10))

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer is None
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.QUEUED


def test_an_agent_without_a_required_skill_is_never_eligible_however_long_the_wait(
    agent_factory, ticket_factory
):
    # given: past both relaxation steps
    agent_factory(online=True, skills={"billing": 5})
    ticket = waiting_since(ticket_factory(skills=["refunds"]), ago(hours=2))

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer is None


def test_an_agent_who_declined_the_ticket_is_skipped_but_a_revoked_offer_does_not_count(
    agent_factory, ticket_factory
):
    # given: the better agent declined it; a coordinator took it back from the other one
    ticket = ticket_factory()
    declined = agent_factory(online=True, idle_since=None)
    revoked = agent_factory(online=True, idle_since=ago(minutes=5))
    expires_at = timezone.now() + timedelta(seconds=30)
    Offer.objects.create(
        ticket=ticket, agent=declined, status=Offer.Status.DECLINED, expires_at=expires_at
    )
    Offer.objects.create(
        ticket=ticket, agent=revoked, status=Offer.Status.REVOKED, expires_at=expires_at
    )

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer.agent == revoked


# -- the score ---------------------------------------------------------------------------------


def test_quality_leads_cost_and_the_offer_records_the_score_and_its_parts(
    agent_factory, ticket_factory
):
    # given: an excellent, expensive agent and a mediocre, cheap one, otherwise alike
    idle_since = ago(minutes=10)
    excellent = agent_factory(online=True, pay_rate=Decimal("40.00"), idle_since=idle_since)
    cheap = agent_factory(online=True, pay_rate=Decimal("10.00"), idle_since=idle_since)
    rated(ticket_factory, excellent, *[5] * 10)
    rated(ticket_factory, cheap, *[3] * 10)
    ticket = ticket_factory()

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then: pool mean 4, five pseudo-ratings: quality (20 + 50) / 15 against (20 + 30) / 15;
    # cost 1 - 40/40 against 1 - 10/40. The cheap one would score
    # 0.233333 + 0.25 + 0.2 + 0.1 + 0.0375 = 0.820833.
    assert offer.agent == excellent
    assert offer.score == 0.916667
    assert offer.score_parts == {
        "quality": 0.366667,
        "proficiency": 0.25,
        "idle": 0.2,
        "load": 0.1,
        "cost": 0.0,
    }
    assert ticket.events.get(kind="offered").detail == {"score": 0.916667}


def test_a_long_good_record_beats_a_single_lucky_rating(agent_factory, ticket_factory):
    # given: one 5 for the newcomer, eighteen 5s and two 4s for the veteran, and a pool pulled
    # down by an offline agent's twenty 2s
    newcomer = agent_factory(online=True, idle_since=None)
    veteran = agent_factory(online=True, idle_since=None)
    rated(ticket_factory, newcomer, 5)
    rated(ticket_factory, veteran, *[5] * 18, 4, 4)
    rated(ticket_factory, agent_factory(), *[2] * 20)
    ticket = ticket_factory()

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then: pool mean 143 / 41; the veteran's (5 × 143/41 + 98) / 25 beats the newcomer's
    # (5 × 143/41 + 5) / 6, where their raw means (4.9 against 5) would rank them the other way
    assert offer.agent == veteran
    assert offer.score_parts["quality"] == 0.361756


def test_only_ratings_within_the_quality_window_count(agent_factory, ticket_factory):
    # given: one agent's only ratings are 1s from 31 days ago, outside the 30-day window; the
    # other's are recent 3s, in a pool that an offline agent's recent 5s lift to 65 / 15
    forgotten = agent_factory(online=True, idle_since=None)
    middling = agent_factory(online=True, idle_since=None)
    for _ in range(10):
        resolved_ago(ticket_factory, forgotten, 1, timedelta(days=31))
    rated(ticket_factory, middling, *[3] * 5)
    rated(ticket_factory, agent_factory(), *[5] * 10)
    ticket = ticket_factory()

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then: the old 1s are forgotten, so that agent is at the pool mean, 13/3, above the 3s
    # shrunk toward it; counted, they would have sunk it below
    assert offer.agent == forgotten
    assert offer.score_parts["quality"] == 0.333333


def test_the_more_proficient_agent_is_chosen(agent_factory, ticket_factory):
    # given
    idle_since = ago(minutes=10)
    agent_factory(online=True, skills={"refunds": 3, "billing": 3}, idle_since=idle_since)
    expert = agent_factory(online=True, skills={"refunds": 5, "billing": 4}, idle_since=idle_since)
    ticket = ticket_factory(skills=["refunds", "billing"])

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then: mean proficiency 4.5 → (4.5 - 1) / 4 × 0.25
    assert offer.agent == expert
    assert offer.score_parts["proficiency"] == 0.21875


def test_the_less_loaded_agent_is_chosen(agent_factory, ticket_factory):
    # given: equal in all but load; one already holds a pending offer of its two slots
    idle_since = ago(minutes=10)
    busy = agent_factory(online=True, capacity=2, idle_since=idle_since)
    free = agent_factory(online=True, capacity=2, idle_since=idle_since)
    Offer.objects.create(
        ticket=ticket_factory(status=Ticket.Status.OFFERED),
        agent=busy,
        expires_at=timezone.now() + timedelta(seconds=30),
    )
    ticket = ticket_factory()

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer.agent == free
    assert offer.score_parts["load"] == 0.1


def test_coordinators_weights_change_the_choice(agent_factory, ticket_factory):
    # given: weights that put fairness (idle time) far above quality
    set_policy(
        weight_quality=0.10,
        weight_proficiency=0.0,
        weight_idle=0.85,
        weight_load=0.0,
        weight_cost=0.05,
    )
    excellent = agent_factory(online=True, idle_since=ago(minutes=1))
    rated(ticket_factory, excellent, *[5] * 10)
    longest_idle = agent_factory(online=True, idle_since=ago(minutes=10))
    rated(ticket_factory, longest_idle, *[2] * 10)
    ticket = ticket_factory()

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer.agent == longest_idle
    assert offer.score_parts["idle"] == 0.85


def test_a_drained_offer_scores_the_agent_among_every_eligible_agent(agent_factory, ticket_factory):
    # given: idle weighs nearly everything (nobody has a rating: quality is the same for all);
    # the drained agent has been idle 5 minutes, another eligible agent 20, and a third, who
    # does not speak the ticket's language, 40
    set_policy(
        weight_quality=0.1,
        weight_proficiency=0.0,
        weight_idle=0.9,
        weight_load=0.0,
        weight_cost=0.0,
    )
    drained = agent_factory(online=True)
    other = agent_factory(online=True)
    agent_factory(online=True, languages=["sv"])
    ticket = ticket_factory()
    now = timezone.now()
    for agent, minutes in ((drained, 5), (other, 20)):
        Agent.objects.filter(pk=agent.pk).update(idle_since=now - timedelta(minutes=minutes))
    Agent.objects.filter(languages__code="sv").update(idle_since=now - timedelta(minutes=40))

    # when
    (offer,) = agent_drain(agent_id=drained.pk)

    # then: 5 of the 20 minutes of the longest idle eligible agent, and half the quality scale
    assert offer.ticket == ticket
    assert offer.score_parts["idle"] == pytest.approx(0.9 * 5 / 20, abs=1e-5)
    assert offer.score == pytest.approx(0.1 * 0.5 + 0.9 * 5 / 20, abs=1e-5)


def test_the_database_keeps_the_best_candidates_that_the_scores_rank_first(
    agent_factory, ticket_factory
):
    # given: two dozen eligible agents that differ in every part of the score: ratings,
    # proficiency, idle time (some never had work), load and pay rate
    rng = random.Random(7)
    now = timezone.now()
    for n in range(24):
        agent = agent_factory(
            online=True,
            capacity=3,
            pay_rate=Decimal(rng.randint(10, 30)),
            skills={"refunds": rng.randint(3, 5)},
        )
        idle_since = None if n % 7 == 0 else now - timedelta(seconds=rng.randint(1, 3600))
        Agent.objects.filter(pk=agent.pk).update(idle_since=idle_since)
        rated(ticket_factory, agent, *[rng.randint(1, 5) for _ in range(rng.randint(0, 4))])
        for _ in range(rng.randint(0, 2)):
            ticket_factory(status=Ticket.Status.ASSIGNED, agent=agent)
    ticket = ticket_factory(skills=["refunds"])
    policy = DispatchPolicy.load()

    # when: the database cuts the ranking at 1, 5 and 12, and once keeps everyone
    everyone = agents_ranked_for(ticket=ticket, now=now, policy=policy, limit=100)
    cuts = {
        k: agents_ranked_for(ticket=ticket, now=now, policy=policy, limit=k) for k in (1, 5, 12)
    }

    # then: each cut holds exactly the best by the recorded scores, which rank everyone
    totals = [candidate.score.total for candidate in everyone]
    assert len(everyone) == 24
    assert totals == sorted(totals, reverse=True)
    assert cuts == {k: everyone[:k] for k in (1, 5, 12)}


def test_a_drain_scores_each_agent_as_routing_ranks_it_and_skips_the_ineligible(
    agent_factory, ticket_factory
):
    # given: a dozen eligible agents that differ in every part of the score, and four who
    # have been idle longer than any of them but may not take the ticket: one without its
    # skill, one who declined it, one at capacity and one offline
    rng = random.Random(11)
    now = timezone.now()
    eligible = []
    for n in range(12):
        agent = agent_factory(
            online=True,
            capacity=3,
            pay_rate=Decimal(rng.randint(10, 30)),
            skills={"refunds": rng.randint(3, 5), "billing": rng.randint(3, 5)},
        )
        idle_since = None if n % 5 == 0 else now - timedelta(seconds=rng.randint(1, 3600))
        Agent.objects.filter(pk=agent.pk).update(idle_since=idle_since)
        rated(ticket_factory, agent, *[rng.randint(1, 5) for _ in range(rng.randint(0, 4))])
        for _ in range(rng.randint(0, 2)):
            ticket_factory(status=Ticket.Status.ASSIGNED, agent=agent)
        eligible.append(agent)
    both = {"refunds": 5, "billing": 5}
    unskilled = agent_factory(online=True, skills={"refunds": 5}, idle_since=ago(hours=2))
    decliner = agent_factory(online=True, skills=both, idle_since=ago(hours=3))
    full = agent_factory(online=True, skills=both, capacity=1, idle_since=ago(hours=4))
    ticket_factory(status=Ticket.Status.ASSIGNED, agent=full)
    offline = agent_factory(skills=both, idle_since=ago(hours=5))
    ticket = ticket_factory(skills=["refunds", "billing"])
    Offer.objects.create(
        ticket=ticket, agent=decliner, status=Offer.Status.DECLINED, expires_at=now
    )
    policy = DispatchPolicy.load()

    # when
    ranked = agents_ranked_for(ticket=ticket, now=now, policy=policy, limit=100)
    drained = {
        agent.pk: agent_score_for(ticket=ticket, agent_id=agent.pk, now=now, policy=policy)
        for agent in [*eligible, unskilled, decliner, full, offline]
    }

    # then: the same score for each eligible agent, measured against the eligible alone, and
    # none for the other four
    assert {candidate.agent_id for candidate in ranked} == {agent.pk for agent in eligible}
    assert drained == {
        **{candidate.agent_id: candidate.score for candidate in ranked},
        unskilled.pk: None,
        decliner.pk: None,
        full.pk: None,
        offline.pk: None,
    }


def test_equal_scores_keep_the_order_in_which_the_agents_joined(agent_factory, ticket_factory):
    # given: three agents alike in every part of the score, who joined in the reverse order of
    # their ids
    alike = sorted((agent_factory(online=True) for _ in range(3)), key=lambda agent: agent.pk)
    for minutes, agent in enumerate(alike):
        Agent.objects.filter(pk=agent.pk).update(created_at=ago(minutes=minutes))
    ticket = ticket_factory()

    # when
    ranked = agents_ranked_for(
        ticket=ticket, now=timezone.now(), policy=DispatchPolicy.load(), limit=3
    )

    # then: one score for all, and the earliest to join first
    assert [candidate.score for candidate in ranked] == [ranked[0].score] * 3
    assert [candidate.agent_id for candidate in ranked] == [agent.pk for agent in alike[::-1]]


# -- relaxation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("waited_seconds", "offered"), [(110, False), (130, True)])
def test_after_the_first_relaxation_step_any_proficiency_will_do(
    agent_factory, ticket_factory, waited_seconds, offered
):
    # given: proficiency 2 where 3 is asked; the step comes after 120 s
    novice = agent_factory(online=True, skills={"refunds": 2})
    ticket = waiting_since(ticket_factory(skills=["refunds"]), ago(seconds=waited_seconds))

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert (offer.agent if offer else None) == (novice if offered else None)


@pytest.mark.parametrize(("waited_seconds", "offered"), [(290, False), (310, True)])
def test_after_the_second_relaxation_step_a_secondary_language_will_do(
    agent_factory, ticket_factory, waited_seconds, offered
):
    # given: the agent speaks Swedish only as a secondary language; the step comes after 300 s
    agent = agent_factory(online=True, languages=["en"])
    AgentLanguage.objects.create(agent=agent, code="sv", is_primary=False)
    ticket = waiting_since(ticket_factory(language="sv"), ago(seconds=waited_seconds))

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert (offer.agent if offer else None) == (agent if offered else None)


def test_relaxation_widens_the_field_but_the_better_agent_still_wins(agent_factory, ticket_factory):
    # given: past both steps, a native expert and a secondary-language novice, alike otherwise
    idle_since = ago(minutes=10)
    native = agent_factory(online=True, languages=["sv"], skills={"refunds": 5})
    novice = agent_factory(online=True, languages=["en"], skills={"refunds": 1})
    AgentLanguage.objects.create(agent=novice, code="sv", is_primary=False)
    Agent.objects.update(idle_since=idle_since)
    ticket = waiting_since(ticket_factory(language="sv", skills=["refunds"]), ago(minutes=10))

    # when
    offer = ticket_route(ticket_id=ticket.pk)

    # then
    assert offer.agent == native


def test_draining_applies_the_relaxation_steps_ticket_by_ticket(agent_factory, ticket_factory):
    # given: an agent with Swedish as a secondary language and refunds at proficiency 2, and
    # four tickets, two of which have waited past the step they need
    agent = agent_factory(online=True, languages=["en"], skills={"refunds": 2}, capacity=4)
    AgentLanguage.objects.create(agent=agent, code="sv", is_primary=False)
    fresh_swedish = waiting_since(ticket_factory(language="sv"), ago(seconds=60))
    old_swedish = waiting_since(ticket_factory(language="sv"), ago(seconds=400))
    fresh_refund = waiting_since(ticket_factory(skills=["refunds"]), ago(seconds=60))
    old_refund = waiting_since(ticket_factory(skills=["refunds"]), ago(seconds=200))

    # when
    offers = agent_drain(agent_id=agent.pk)

    # then: the oldest first
    assert [offer.ticket for offer in offers] == [old_swedish, old_refund]
    assert Ticket.objects.get(pk=fresh_swedish.pk).status == Ticket.Status.QUEUED
    assert Ticket.objects.get(pk=fresh_refund.pk).status == Ticket.Status.QUEUED


# -- queue order and aging ---------------------------------------------------------------------


@pytest.mark.parametrize(("low_waited_seconds", "served_first"), [(540, "normal"), (660, "low")])
def test_a_low_ticket_that_waited_long_enough_is_served_before_a_fresh_normal_one(
    agent_factory, ticket_factory, low_waited_seconds, served_first
):
    # given: one slot; aging 600 s per priority level, so a fresh normal ticket counts as having
    # arrived 600 s ago and the low one as when it came
    agent = agent_factory(online=True, capacity=1)
    tickets = {
        "low": waiting_since(
            ticket_factory(priority=Ticket.Priority.LOW), ago(seconds=low_waited_seconds)
        ),
        "normal": waiting_since(ticket_factory(priority=Ticket.Priority.NORMAL), ago(seconds=1)),
    }

    # when
    offers = agent_drain(agent_id=agent.pk)

    # then
    assert [offer.ticket for offer in offers] == [tickets[served_first]]


def test_queue_position_follows_the_dispatchers_order(agent_factory, ticket_factory):
    # given: five waiting tickets; each priority level is worth 600 s of waiting
    now = timezone.now()
    made = {}
    for name, priority, waited in [
        ("low-700", Ticket.Priority.LOW, 700),  # counts from 700 s ago
        ("urgent-10", Ticket.Priority.URGENT, 10),  # 1,810 s ago
        ("normal-100", Ticket.Priority.NORMAL, 100),  # 700 s ago too, but came later
        ("high-5", Ticket.Priority.HIGH, 5),  # 1,205 s ago
        ("normal-50", Ticket.Priority.NORMAL, 50),  # 650 s ago
    ]:
        made[name] = waiting_since(
            ticket_factory(priority=priority), now - timedelta(seconds=waited)
        )
    expected = ["urgent-10", "high-5", "low-700", "normal-100", "normal-50"]
    agent = agent_factory(online=True, capacity=5)

    # when
    positions = {name: ticket_queue_position(ticket=ticket) for name, ticket in made.items()}
    listed = list(tickets_waiting(language="en"))
    drained = agent_drain(agent_id=agent.pk)

    # then: the bot's positions, the listing and the drain agree
    assert positions == {name: expected.index(name) + 1 for name in made}
    assert listed == [made[name] for name in expected]
    assert [offer.ticket for offer in drained] == [made[name] for name in expected]


def on_a_tie_grid(ticket_factory, *, aging_seconds: int, seed: int) -> None:
    """24 waiting tickets of every priority created on a grid of whole aging steps, several at
    the very same instant: virtual arrivals tie across priorities, creation times within one."""
    rng = random.Random(seed)
    now = timezone.now()
    for _ in range(24):
        waiting_since(
            ticket_factory(priority=rng.choice(Ticket.Priority.values)),
            now - timedelta(seconds=aging_seconds * rng.randint(0, 4)),
        )


@pytest.mark.parametrize("aging_seconds", [1, 600])
def test_queue_positions_and_the_dispatch_order_agree_through_every_kind_of_tie(
    ticket_factory, aging_seconds
):
    # given: tickets of every priority created on a grid of whole aging steps, several at the
    # very same instant, so that virtual arrivals tie across priorities and creation times tie
    # within one
    set_policy(aging_seconds_per_priority=aging_seconds)
    on_a_tie_grid(ticket_factory, aging_seconds=aging_seconds, seed=7)

    # when
    listed = list(tickets_waiting(language="en"))

    # then: each ticket's position is its place in the dispatcher's order
    assert [ticket_queue_position(ticket=ticket) for ticket in listed] == list(range(1, 25))


@pytest.mark.parametrize("aging_seconds", [1, 600])
def test_a_drain_reads_the_waiting_tickets_in_the_dispatch_order_through_every_kind_of_tie(
    agent_factory, ticket_factory, aging_seconds
):
    # given: tickets of every priority created on a grid of whole aging steps, several at the
    # very same instant, and an agent who may take them all
    set_policy(aging_seconds_per_priority=aging_seconds)
    on_a_tie_grid(ticket_factory, aging_seconds=aging_seconds, seed=13)
    agent = agent_factory(online=True)

    # when
    waiting = waiting_ticket_ids_read(
        agent=agent, now=timezone.now(), policy=DispatchPolicy.load(), limit=100
    )

    # then: the dispatcher's order, tie for tie
    assert waiting == [ticket.pk for ticket in tickets_waiting(language="en")]
