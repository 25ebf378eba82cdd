"""A coordinator's hand: offering or assigning a ticket to a named agent, from the services and
from the Ticket admin, with the audit trail naming who did it."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dispatch.models import Offer
from dispatch.services import (
    AgentAtCapacity,
    AgentNotActive,
    TicketAlreadyWithAgent,
    offer_accept,
    ticket_assign_to,
    ticket_offer_to,
    ticket_route,
)
from tickets.exceptions import TicketClosed
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def coordinator(db):
    return get_user_model().objects.create_user(
        username="coordinator", password="pass-word-1", is_staff=True, is_superuser=True
    )


def events(ticket: Ticket) -> list[tuple]:
    """(kind, from_status, to_status, agent id, actor id, detail), oldest first."""
    return list(
        ticket.events.values_list("kind", "from_status", "to_status", "agent", "actor", "detail")
    )


def offers(ticket: Ticket) -> list[tuple]:
    """(agent id, status, revoke reason, released, assigned_by id), oldest first."""
    return [
        (
            offer.agent_id,
            offer.status,
            offer.revoke_reason,
            offer.released_at is not None,
            offer.assigned_by_id,
        )
        for offer in ticket.offers.order_by("created_at")
    ]


HAND = {"by_coordinator": True, "over_capacity": False}


# -- services ----------------------------------------------------------------------------------


def test_a_coordinator_offers_a_queued_ticket_to_a_named_agent(
    agent_factory, ticket_factory, coordinator
):
    # given: the named agent does not even speak the ticket's language
    named = agent_factory(online=True, languages=["de"])
    ticket = ticket_factory(language="en")

    # when
    offer = ticket_offer_to(ticket_id=ticket.pk, agent_id=named.pk, by=coordinator)

    # then
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OFFERED
    assert (offer.agent, offer.score, offer.score_parts) == (named, None, {})
    assert offers(ticket) == [(named.pk, Offer.Status.PENDING, "", False, coordinator.pk)]
    assert events(ticket) == [("offered", "queued", "offered", named.pk, coordinator.pk, HAND)]


def test_offering_to_someone_else_revokes_the_pending_offer_first(
    agent_factory, ticket_factory, coordinator
):
    # given: routing offered the ticket to one agent
    first = agent_factory(online=True)
    ticket = ticket_factory()
    ticket_route(ticket_id=ticket.pk)
    named = agent_factory(online=True)

    # when
    ticket_offer_to(ticket_id=ticket.pk, agent_id=named.pk, by=coordinator)

    # then
    assert offers(ticket) == [
        (first.pk, Offer.Status.REVOKED, "reassigned", False, None),
        (named.pk, Offer.Status.PENDING, "", False, coordinator.pk),
    ]
    assert [event[:5] for event in events(ticket)] == [
        ("offered", "queued", "offered", first.pk, None),
        ("revoked", "offered", "queued", first.pk, coordinator.pk),
        ("offered", "queued", "offered", named.pk, coordinator.pk),
    ]
    assert ticket.events.get(kind="revoked").detail == {"reason": "reassigned"}


def test_a_coordinator_assigns_an_assigned_ticket_to_another_agent(
    agent_factory, ticket_factory, coordinator
):
    # given: the ticket is with one agent already, and its bot has a webhook
    first = agent_factory(online=True)
    ticket = ticket_factory(callback_url="https://bot.example.com/hooks")
    offer_accept(offer_id=ticket_route(ticket_id=ticket.pk).pk, agent=first)
    named = agent_factory(online=True)

    # when
    assigned = ticket_assign_to(ticket_id=ticket.pk, agent_id=named.pk, by=coordinator)

    # then
    assigned.refresh_from_db()
    assert (assigned.status, assigned.agent) == (Ticket.Status.ASSIGNED, named)
    assert offers(ticket) == [
        (first.pk, Offer.Status.ACCEPTED, "reassigned", True, None),
        (named.pk, Offer.Status.ACCEPTED, "", False, coordinator.pk),
    ]
    assert [event[:5] for event in events(ticket)] == [
        ("offered", "queued", "offered", first.pk, None),
        ("assigned", "offered", "assigned", first.pk, None),
        ("requeued", "assigned", "queued", first.pk, coordinator.pk),
        ("assigned", "queued", "assigned", named.pk, coordinator.pk),
    ]
    assert list(ticket.deliveries.values_list("event", flat=True)) == [
        "ticket.assigned",
        "ticket.requeued",
        "ticket.assigned",
    ]


def test_an_agent_at_capacity_is_refused_unless_the_coordinator_allows_it(
    agent_factory, ticket_factory, coordinator
):
    # given: the named agent holds one ticket of one slot
    named = agent_factory(online=True, capacity=1)
    ticket_route(ticket_id=ticket_factory().pk)
    ticket = ticket_factory()

    # when
    with pytest.raises(AgentAtCapacity) as refused:
        ticket_assign_to(ticket_id=ticket.pk, agent_id=named.pk, by=coordinator)
    allowed = ticket_assign_to(
        ticket_id=ticket.pk, agent_id=named.pk, by=coordinator, allow_over_capacity=True
    )

    # then
    assert str(refused.value) == (f"{named} holds 1 of 1 tickets; allow over capacity to add one.")
    assert (allowed.status, allowed.agent) == (Ticket.Status.ASSIGNED, named)
    assert events(ticket) == [
        (
            "assigned",
            "queued",
            "assigned",
            named.pk,
            coordinator.pk,
            {"by_coordinator": True, "over_capacity": True},
        )
    ]


def test_a_refused_hand_over_leaves_the_ticket_with_its_holder(
    agent_factory, ticket_factory, coordinator
):
    # given: the ticket is offered to one agent; the named one is full
    first = agent_factory(online=True, capacity=2)
    ticket = ticket_factory()
    ticket_route(ticket_id=ticket.pk)
    named = agent_factory(online=True, capacity=1)
    ticket_route(ticket_id=ticket_factory().pk)
    assert Offer.objects.filter(agent=named, status=Offer.Status.PENDING).count() == 1

    # when
    with pytest.raises(AgentAtCapacity):
        ticket_offer_to(ticket_id=ticket.pk, agent_id=named.pk, by=coordinator)

    # then
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.OFFERED
    assert offers(ticket) == [(first.pk, Offer.Status.PENDING, "", False, None)]


@pytest.mark.parametrize("status", [Ticket.Status.RESOLVED, Ticket.Status.CANCELLED])
def test_a_closed_ticket_cannot_be_handed_over(agent_factory, ticket_factory, coordinator, status):
    # given
    ticket = ticket_factory(status=status)

    # when / then
    with pytest.raises(TicketClosed):
        ticket_offer_to(ticket_id=ticket.pk, agent_id=agent_factory().pk, by=coordinator)


def test_an_agent_who_is_not_active_cannot_be_handed_a_ticket(
    agent_factory, ticket_factory, coordinator
):
    # given
    suspended = agent_factory(account_state="suspended")

    # when / then
    with pytest.raises(AgentNotActive):
        ticket_offer_to(ticket_id=ticket_factory().pk, agent_id=suspended.pk, by=coordinator)


def test_handing_a_ticket_to_its_own_holder_is_refused(agent_factory, ticket_factory, coordinator):
    # given
    holder = agent_factory(online=True)
    ticket = ticket_factory()
    ticket_route(ticket_id=ticket.pk)

    # when / then
    with pytest.raises(TicketAlreadyWithAgent):
        ticket_offer_to(ticket_id=ticket.pk, agent_id=holder.pk, by=coordinator)


# -- the Ticket admin --------------------------------------------------------------------------


def hand_over(client, action: str, tickets: list[Ticket], agent, *, over_capacity=False):
    data = {
        "action": action,
        "_selected_action": [str(ticket.pk) for ticket in tickets],
        "agent": str(agent.pk) if agent else "",
    }
    if over_capacity:
        data["allow_over_capacity"] = "on"
    return client.post("/admin/tickets/ticket/", data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_ticket_admin_offers_the_selected_tickets_to_the_chosen_agent(
    client, coordinator, agent_factory, ticket_factory
):
    # given
    client.force_login(coordinator)
    named = agent_factory(online=True, display_name="Maja", capacity=3)
    first = ticket_factory(external_id="conv-1")
    second = ticket_factory(external_id="conv-2")

    # when
    response = hand_over(client, "offer_to_agent", [first, second], named)

    # then
    assert messages_of(response) == ["Offered to Maja: conv-1, conv-2."]
    for ticket in (first, second):
        assert offers(ticket) == [(named.pk, Offer.Status.PENDING, "", False, coordinator.pk)]


def test_the_ticket_admin_reports_a_refusal_and_honours_the_capacity_flag(
    client, coordinator, agent_factory, ticket_factory
):
    # given: Maja has one slot, already taken
    client.force_login(coordinator)
    named = agent_factory(online=True, display_name="Maja", capacity=1)
    ticket_route(ticket_id=ticket_factory().pk)
    ticket = ticket_factory(external_id="conv-9")

    # when
    refused = hand_over(client, "assign_to_agent", [ticket], named)
    allowed = hand_over(client, "assign_to_agent", [ticket], named, over_capacity=True)

    # then
    assert messages_of(refused) == [
        "conv-9: Maja holds 1 of 1 tickets; allow over capacity to add one."
    ]
    assert messages_of(allowed) == ["Assigned to Maja: conv-9."]
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent) == (Ticket.Status.ASSIGNED, named)


def test_the_ticket_admin_asks_for_the_agent_first(client, coordinator, ticket_factory):
    # given
    client.force_login(coordinator)
    ticket = ticket_factory()

    # when
    response = hand_over(client, "offer_to_agent", [ticket], None)

    # then
    assert messages_of(response) == ["Choose the agent first."]
    assert ticket.offers.count() == 0


def test_the_ticket_page_links_to_its_offers_with_why_each_agent_was_chosen(
    client, coordinator, agent_factory, ticket_factory
):
    # given: a routed offer and another ticket's offer
    client.force_login(coordinator)
    agent_factory(online=True, display_name="Maja", capacity=2)
    ticket = ticket_factory()
    offer = ticket_route(ticket_id=ticket.pk)
    ticket_route(ticket_id=ticket_factory().pk)

    # when
    ticket_page = client.get(f"/admin/tickets/ticket/{ticket.pk}/change/")
    offer_list = client.get(f"/admin/dispatch/offer/?ticket={ticket.pk}")
    offer_page = client.get(f"/admin/dispatch/offer/{offer.pk}/change/")

    # then
    assert f'/admin/dispatch/offer/?ticket={ticket.pk}"' in ticket_page.content.decode()
    assert [o.pk for o in offer_list.context["cl"].result_list] == [offer.pk]
    page = offer_page.content.decode()
    for part, value in offer.score_parts.items():
        assert f"<tr><td>{part}</td><td>{value}</td></tr>" in page


def test_a_ticket_past_due_for_expiry_is_still_handed_over(
    agent_factory, ticket_factory, coordinator
):
    # given: a pending offer past its expiry that no timer has expired yet
    first = agent_factory(online=True)
    ticket = ticket_factory()
    offer = ticket_route(ticket_id=ticket.pk)
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    named = agent_factory(online=True)

    # when
    ticket_offer_to(ticket_id=ticket.pk, agent_id=named.pk, by=coordinator)

    # then
    assert [(agent, status) for agent, status, *_ in offers(ticket)] == [
        (first.pk, Offer.Status.REVOKED),
        (named.pk, Offer.Status.PENDING),
    ]
