"""First-assignment targets: a ticket that waits past its priority's target is flagged once
(the field, an audit event, the metric), by the sweep, by routing or at a late assignment."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dispatch.services import dispatch_sweep, offer_accept, ticket_route
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def waited(ticket_factory, seconds: int, **fields) -> Ticket:
    ticket = ticket_factory(**fields)
    Ticket.objects.filter(pk=ticket.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )
    ticket.refresh_from_db()
    return ticket


def breach_events(ticket: Ticket) -> list[tuple]:
    return list(
        ticket.events.filter(kind="sla_breached").values_list(
            "kind", "from_status", "to_status", "agent", "detail"
        )
    )


def test_the_sweep_flags_a_waiting_ticket_past_its_target_once(ticket_factory):
    # given: a normal ticket (target 300 s) that waited 301 s with nobody to take it
    ticket = waited(ticket_factory, 301)

    # when: two sweeps
    dispatch_sweep()
    dispatch_sweep()

    # then
    ticket.refresh_from_db()
    assert ticket.sla_breached is True
    waited_seconds = int((ticket.sla_breached_at - ticket.created_at).total_seconds())
    assert breach_events(ticket) == [
        (
            "sla_breached",
            "queued",
            "queued",
            None,
            {"target_seconds": 300, "waited_seconds": waited_seconds},
        )
    ]


@pytest.mark.parametrize(
    ("priority", "waited_seconds", "breached"),
    [
        (Ticket.Priority.URGENT, 59, False),
        (Ticket.Priority.URGENT, 61, True),
        (Ticket.Priority.HIGH, 121, True),
        (Ticket.Priority.NORMAL, 290, False),
        (Ticket.Priority.LOW, 610, False),
        (Ticket.Priority.LOW, 901, True),
    ],
)
def test_each_priority_has_its_own_target(ticket_factory, priority, waited_seconds, breached):
    # given
    ticket = waited(ticket_factory, waited_seconds, priority=priority)

    # when
    dispatch_sweep()

    # then
    ticket.refresh_from_db()
    assert ticket.sla_breached is breached
    assert len(breach_events(ticket)) == int(breached)


def test_a_ticket_assigned_in_time_is_never_flagged_later(ticket_factory, agent_factory):
    # given: assigned within its target, then requeued long after
    now = timezone.now()
    ticket = waited(ticket_factory, 1000, first_assigned_at=now - timedelta(seconds=900))

    # when
    dispatch_sweep()

    # then
    ticket.refresh_from_db()
    assert ticket.sla_breached is False


def test_routing_flags_an_overdue_ticket_before_offering_it(ticket_factory, agent_factory):
    # given
    agent = agent_factory(online=True)
    ticket = waited(ticket_factory, 400)

    # when
    ticket_route(ticket_id=ticket.pk)

    # then
    assert list(ticket.events.values_list("kind", "from_status", "to_status", "agent")) == [
        ("sla_breached", "queued", "queued", None),
        ("offered", "queued", "offered", agent.pk),
    ]


def test_a_first_assignment_past_the_target_is_a_breach(ticket_factory, agent_factory):
    # given: offered in time (the target is 300 s), accepted after it
    agent = agent_factory(online=True)
    ticket = waited(ticket_factory, 200)
    offer = ticket_route(ticket_id=ticket.pk)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(seconds=310))

    # when
    offer_accept(offer_id=offer.pk, agent=agent)

    # then
    ticket.refresh_from_db()
    assert ticket.sla_breached is True
    assert list(ticket.events.values_list("kind", flat=True)) == [
        "offered",
        "sla_breached",
        "assigned",
    ]


def test_the_breach_shows_in_the_metrics(client, ticket_factory):
    # given
    waited(ticket_factory, 301)
    waited(ticket_factory, 10)
    dispatch_sweep()

    # when
    response = client.get("/metrics")

    # then
    assert "\ndispatch_sla_breached_tickets 1.0\n" in response.content.decode()
