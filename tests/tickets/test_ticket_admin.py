"""The Ticket admin: the columns and filters coordinators work from, and the requeue and cancel
actions, each through the same services as the API and recorded in the audit trail."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dispatch.models import DispatchPolicy, Offer
from dispatch.services import offer_accept, ticket_assign_to, ticket_offer_to, ticket_route
from tests.admin_pages import changelist_rows, messages_of, post_action
from tests.factories import AgentFactory, TicketFactory
from tickets.admin import sla_state
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

TICKETS = "/admin/tickets/ticket/"


@pytest.fixture
def coordinator(db):
    return get_user_model().objects.create_user(
        username="coordinator", password="pass-word-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def coordinator_client(client, coordinator):
    client.force_login(coordinator)
    return client


def events(ticket: Ticket) -> list[tuple]:
    """(kind, from_status, to_status, agent id, actor id, detail), oldest first."""
    return list(
        ticket.events.values_list("kind", "from_status", "to_status", "agent", "actor", "detail")
    )


def act(client, action: str, tickets: list[Ticket], **form):
    return post_action(client, TICKETS, action, tickets, **{"agent": "", **form})


def rows(response) -> dict[str, dict[str, str]]:
    """The changelist's rows: external id → {column: text}."""
    return changelist_rows(response, "external_id")


def shown(response) -> list[str]:
    return sorted(ticket.external_id for ticket in response.context["cl"].result_list)


def aged(ticket: Ticket, **times: timedelta) -> Ticket:
    """Set the ticket's times, each that long after its creation, created an hour ago."""
    created = timezone.now() - timedelta(hours=1)
    values = {field: created + after for field, after in times.items()}
    Ticket.objects.filter(pk=ticket.pk).update(created_at=created, **values)
    ticket.refresh_from_db()
    return ticket


# -- columns and filters ----------------------------------------------------------------------


def test_the_list_shows_waiting_time_sla_state_and_agent(coordinator_client):
    # given: normal priority has a 300 s first-assignment target
    maja = AgentFactory(display_name="Maja")
    aged(
        TicketFactory(external_id="quick", agent=maja, status="assigned", language="sv"),
        first_assigned_at=timedelta(seconds=75),
    )
    aged(
        TicketFactory(external_id="slow", agent=maja, status="resolved", priority=2),
        first_assigned_at=timedelta(minutes=3, seconds=5),
    )
    aged(
        TicketFactory(external_id="gone", status="cancelled"),
        cancelled_at=timedelta(seconds=30),
    )
    aged(TicketFactory(external_id="flagged", sla_breached=True, priority=3))

    # when
    table = rows(coordinator_client.get(TICKETS))

    # then
    columns = ["status", "priority", "language", "waiting_time", "sla", "agent"]
    assert {external_id: [row[c] for c in columns] for external_id, row in table.items()} == {
        "quick": ["Assigned", "normal", "sv", "1 min 15 s", "met", "Maja"],
        "slow": ["Resolved", "high", "en", "3 min 5 s", "breached", "Maja"],
        "gone": ["Cancelled", "normal", "en", "30 s", "cancelled while waiting", "-"],
        "flagged": ["Queued", "urgent", "en", "1 h 0 min", "breached", "-"],
    }


def test_a_waiting_ticket_is_due_until_its_target_passes():
    # given
    policy = DispatchPolicy.load()
    ticket = TicketFactory(priority=1)
    created = ticket.created_at

    # when / then: 300 s for normal priority
    assert sla_state(ticket=ticket, policy=policy, now=created + timedelta(seconds=100)) == (
        "due in 3 min 20 s"
    )
    assert sla_state(ticket=ticket, policy=policy, now=created + timedelta(seconds=301)) == (
        "breached"
    )


def test_the_list_filters_and_searches(coordinator_client):
    # given
    maja = AgentFactory(display_name="Maja")
    AgentFactory(display_name="Bo")
    TicketFactory(external_id="conv-sv", language="sv", agent=maja, status="assigned")
    TicketFactory(external_id="conv-en", customer_name="Anna Berg")
    TicketFactory(external_id="conv-late", sla_breached=True, priority=3)

    # when / then
    assert shown(coordinator_client.get(TICKETS, {"status__exact": "queued"})) == [
        "conv-en",
        "conv-late",
    ]
    assert shown(coordinator_client.get(TICKETS, {"language": "sv"})) == ["conv-sv"]
    assert shown(coordinator_client.get(TICKETS, {"priority__exact": "3"})) == ["conv-late"]
    assert shown(coordinator_client.get(TICKETS, {"sla_breached__exact": "1"})) == ["conv-late"]
    assert shown(coordinator_client.get(TICKETS, {"agent__id__exact": str(maja.pk)})) == ["conv-sv"]
    assert shown(coordinator_client.get(TICKETS, {"q": "berg"})) == ["conv-en"]
    assert shown(coordinator_client.get(TICKETS, {"q": "maja"})) == ["conv-sv"]
    # Only agents who hold a ticket are offered as a filter.
    agent_filter = coordinator_client.get(TICKETS).content.decode()
    assert f"?agent__id__exact={maja.pk}" in agent_filter
    assert "Bo</a>" not in agent_filter


# -- requeue ----------------------------------------------------------------------------------


def test_requeue_takes_an_assigned_ticket_back_and_routes_it_to_another_agent(
    coordinator_client, coordinator, bot_receiver
):
    # given: Maja works the ticket; Bo is online and never had work, so routing prefers him
    maja = AgentFactory(online=True, display_name="Maja")
    ticket = TicketFactory(external_id="conv-1", callback_url=bot_receiver.url)
    offer_accept(offer_id=ticket_route(ticket_id=ticket.pk).pk, agent=maja)
    bo = AgentFactory(online=True, display_name="Bo")

    # when
    response = act(
        coordinator_client, "requeue", [ticket], reason="Customer asked for a specialist"
    )

    # then
    assert messages_of(response) == ["Requeued: conv-1."]
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OFFERED
    assert [(kind, frm, to, agent, actor) for kind, frm, to, agent, actor, _ in events(ticket)] == [
        ("offered", "queued", "offered", maja.pk, None),
        ("assigned", "offered", "assigned", maja.pk, None),
        ("requeued", "assigned", "queued", maja.pk, coordinator.pk),
        ("offered", "queued", "offered", bo.pk, None),
    ]
    assert ticket.events.get(kind="requeued").detail == {
        "reason": "reassigned",
        "note": "Customer asked for a specialist",
    }
    assert list(ticket.offers.order_by("created_at").values_list("agent", "status")) == [
        (maja.pk, Offer.Status.ACCEPTED),
        (bo.pk, Offer.Status.PENDING),
    ]
    assert bot_receiver.events() == ["ticket.assigned", "ticket.requeued"]


def test_requeue_revokes_a_pending_offer_and_routes_the_ticket_again(
    coordinator_client, coordinator
):
    # given
    maja = AgentFactory(online=True)
    ticket = TicketFactory(external_id="conv-1")
    offer = ticket_route(ticket_id=ticket.pk)
    bo = AgentFactory(online=True)

    # when
    act(coordinator_client, "requeue", [ticket], reason="Maja is on a call")

    # then
    offer.refresh_from_db()
    assert (offer.agent, offer.status, offer.revoke_reason) == (
        maja,
        Offer.Status.REVOKED,
        "reassigned",
    )
    assert events(ticket)[1:] == [
        (
            "revoked",
            "offered",
            "queued",
            maja.pk,
            coordinator.pk,
            {"reason": "reassigned", "note": "Maja is on a call"},
        ),
        ("offered", "queued", "offered", bo.pk, None, {"score": ticket.offers.get(agent=bo).score}),
    ]


def test_requeue_needs_a_reason_and_a_ticket_someone_holds(coordinator_client, coordinator):
    # given
    maja = AgentFactory()
    held = TicketFactory(external_id="conv-held")
    ticket_offer_to(ticket_id=held.pk, agent_id=maja.pk, by=coordinator)
    queued = TicketFactory(external_id="conv-queued")
    resolved = TicketFactory(external_id="conv-done", status="resolved")

    # when
    without_reason = act(coordinator_client, "requeue", [held], reason="  ")
    too_long = act(coordinator_client, "requeue", [held], reason="x" * 501)
    not_held = act(coordinator_client, "requeue", [queued, resolved], reason="Stuck")

    # then
    assert messages_of(without_reason) == ["Give the reason first (at most 500 characters)."]
    assert messages_of(too_long) == ["Give the reason first (at most 500 characters)."]
    assert messages_of(not_held) == [
        "conv-queued: The ticket is queued: no agent holds it.",
        "conv-done: The ticket is resolved.",
    ]
    assert Ticket.objects.get(pk=held.pk).status == Ticket.Status.OFFERED
    assert [kind for kind, *_ in events(held)] == ["offered"]
    assert events(queued) == events(resolved) == []


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_closes_the_ticket_tells_the_bot_and_names_the_coordinator(
    coordinator_client, coordinator, bot_receiver
):
    # given: an assigned ticket with a webhook, and an offered one
    maja = AgentFactory(online=True, capacity=3)
    assigned = TicketFactory(external_id="conv-1", callback_url=bot_receiver.url)
    ticket_assign_to(ticket_id=assigned.pk, agent_id=maja.pk, by=coordinator)
    offered = TicketFactory(external_id="conv-2")
    offer = ticket_route(ticket_id=offered.pk)

    # when
    response = act(coordinator_client, "cancel", [assigned, offered])

    # then
    assert messages_of(response) == ["Cancelled: conv-1, conv-2."]
    offer.refresh_from_db()
    assert list(
        Ticket.objects.filter(pk__in=[assigned.pk, offered.pk]).values_list("status", flat=True)
    ) == [Ticket.Status.CANCELLED, Ticket.Status.CANCELLED]
    assert events(assigned)[-1] == (
        "cancelled",
        "assigned",
        "cancelled",
        maja.pk,
        coordinator.pk,
        {},
    )
    assert events(offered)[-1] == ("cancelled", "offered", "cancelled", None, coordinator.pk, {})
    assert (offer.status, offer.revoke_reason) == (Offer.Status.REVOKED, "cancelled")
    assert bot_receiver.events() == ["ticket.assigned", "ticket.cancelled"]


def test_cancel_refuses_a_resolved_ticket_and_reports_one_cancelled_already(
    coordinator_client,
):
    # given
    resolved = TicketFactory(external_id="conv-done", status="resolved")
    cancelled = TicketFactory(external_id="conv-gone", status="cancelled")

    # when
    response = act(coordinator_client, "cancel", [resolved, cancelled])

    # then
    assert messages_of(response) == [
        "conv-done: The ticket is resolved.",
        "conv-gone: The ticket is cancelled already.",
    ]
    assert Ticket.objects.get(pk=resolved.pk).status == "resolved"
    assert events(resolved) == events(cancelled) == []


# -- who may --------------------------------------------------------------------------------


def test_someone_who_is_not_staff_is_sent_to_the_log_in(client, coordinator):
    # given: an agent, logged in, whose ticket is assigned
    maja = AgentFactory()
    ticket = TicketFactory()
    ticket_assign_to(ticket_id=ticket.pk, agent_id=maja.pk, by=coordinator)
    client.force_login(maja.user)

    # when
    listing = client.get(TICKETS)
    action = client.post(
        TICKETS, {"action": "cancel", "_selected_action": [str(ticket.pk)], "agent": ""}
    )

    # then
    assert (listing.status_code, listing["Location"]) == (302, f"/admin/login/?next={TICKETS}")
    assert (action.status_code, action["Location"]) == (302, f"/admin/login/?next={TICKETS}")
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.ASSIGNED


def test_a_tickets_page_reads_its_audit_trail_in_a_fixed_number_of_queries(
    coordinator_client, coordinator
):
    # given a ticket with an audit trail naming agents and a coordinator
    ticket = TicketFactory()
    page = f"{TICKETS}{ticket.pk}/change/"

    def add_events(count: int) -> None:
        for _ in range(count):
            ticket.events.create(kind="note", agent=AgentFactory(), actor=coordinator)

    def queries_to_open_the_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert coordinator_client.get(page).status_code == 200
        return len(queries)

    add_events(2)
    queries_to_open_the_page()  # the first visit also fills per-process caches
    with_two = queries_to_open_the_page()

    # when the trail grows
    add_events(6)

    # then the page costs the same
    assert queries_to_open_the_page() == with_two
