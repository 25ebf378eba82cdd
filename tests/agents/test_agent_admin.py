"""The Agent admin: the list coordinators run the pool from, and the approve, suspend and set
offline actions, each through the services, heard by the agent's open tabs and recorded."""

from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent, AgentConnection, AgentLanguage, Skill
from dispatch.asgi import application
from dispatch.models import Offer
from dispatch.services import ticket_assign_to, ticket_offer_to
from tests.admin_pages import changelist_rows, messages_of, post_action
from tests.factories import AgentFactory, TicketFactory, UserFactory
from tickets.models import Ticket
from tickets.services import ticket_set_csat

pytestmark = pytest.mark.django_db(transaction=True)

AGENTS = "/admin/agents/agent/"
TIMEOUT = 5
HAND = {"by_coordinator": True, "over_capacity": False}


@pytest.fixture
def coordinator(db):
    return get_user_model().objects.create_user(
        username="coordinator", password="pass-word-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def coordinator_client(client, coordinator):
    client.force_login(coordinator)
    return client


def act(client, action: str, agents: list[Agent]):
    return post_action(client, AGENTS, action, agents)


def rows(response) -> dict[str, dict[str, str]]:
    """The changelist's rows: display name → {column: text}."""
    return changelist_rows(response, "display_name")


def shown(response) -> list[str]:
    return sorted(agent.display_name for agent in response.context["cl"].result_list)


def events(ticket: Ticket) -> list[tuple]:
    """(kind, from_status, to_status, agent id, actor id, detail), oldest first."""
    return list(
        ticket.events.values_list("kind", "from_status", "to_status", "agent", "actor", "detail")
    )


def rated(agent: Agent, score: int, *, days_ago: int = 1) -> Ticket:
    ticket = TicketFactory(
        agent=agent,
        status=Ticket.Status.RESOLVED,
        resolved_at=timezone.now() - timedelta(days=days_ago),
    )
    return ticket_set_csat(ticket_id=ticket.pk, score=score)


@pytest.fixture
def pool(coordinator):
    """Maja (online, working one ticket of three), Bo (offline, one pending offer, a stale
    connection) and Cy (an applicant); CSAT 5 and 5 for Maja, 3 for Bo in the quality window."""
    maja = AgentFactory(
        online=True,
        display_name="Maja",
        capacity=3,
        pay_rate=Decimal("12.50"),
        languages=["sv", "en"],
        skills={"refunds": 4, "billing": 2},
    )
    AgentLanguage.objects.create(agent=maja, code="de", is_primary=False)
    bo = AgentFactory(
        display_name="Bo", user=UserFactory(username="bo-berg"), skills={"refunds": 3}
    )
    AgentConnection.objects.create(
        agent=bo,
        channel_name="stale-tab",
        last_heartbeat_at=timezone.now() - timedelta(minutes=2),
    )
    cy = AgentFactory(display_name="Cy", account_state=Agent.AccountState.APPLICANT)
    ticket_assign_to(ticket_id=TicketFactory().pk, agent_id=maja.pk, by=coordinator)
    ticket_offer_to(ticket_id=TicketFactory().pk, agent_id=bo.pk, by=coordinator)
    rated(maja, 5)
    rated(maja, 5)
    rated(bo, 3)
    # Outside the 30-day quality window: routing ignores it, and so does the list.
    rated(cy, 1, days_ago=40)
    return maja, bo, cy


# -- the list ---------------------------------------------------------------------------------


def test_the_list_shows_live_status_load_quality_pay_languages_and_skills(coordinator_client, pool):
    # when
    table = rows(coordinator_client.get(AGENTS))

    # then: quality is the CSAT mean shrunk toward the pool's mean (13/3) by 5 pseudo-ratings,
    # Maja (5 * 13/3 + 10) / 7 = 4.52, Bo (5 * 13/3 + 3) / 6 = 4.11, Cy the pool's mean
    columns = [
        "account_state",
        "live_status",
        "load_of_capacity",
        "quality",
        "pay_rate",
        "language_list",
        "skill_list",
    ]
    assert {name: [row[c] for c in columns] for name, row in table.items()} == {
        "Maja": [
            "Active",
            "available, 1 connection",
            "1/3",
            "4.52 (2 ratings)",
            "12.50",
            "en, sv, de (secondary)",
            "billing (2), refunds (4)",
        ],
        "Bo": [
            "Active",
            "offline, not connected",
            "1/2",
            "4.11 (1 rating)",
            "0.00",
            "en",
            "refunds (3)",
        ],
        "Cy": ["Applicant", "offline, not connected", "0/2", "4.33 (0 ratings)", "0.00", "en", "-"],
    }


def test_the_list_reads_the_same_number_of_queries_for_more_agents(coordinator_client, pool):
    # given
    coordinator_client.get(AGENTS)
    with CaptureQueriesContext(connection) as three_agents:
        coordinator_client.get(AGENTS)
    for score in (2, 4, 5):
        agent = AgentFactory(online=True, skills={f"skill-{score}": score})
        rated(agent, score)

    # when
    with CaptureQueriesContext(connection) as six_agents:
        response = coordinator_client.get(AGENTS)

    # then
    assert len(response.context["cl"].result_list) == 6
    assert len(six_agents) == len(three_agents)


def test_the_list_filters_and_searches(coordinator_client, pool):
    # given
    refunds = Skill.objects.get(slug="refunds")

    # when / then
    assert shown(coordinator_client.get(AGENTS, {"status__exact": "available"})) == ["Maja"]
    assert shown(coordinator_client.get(AGENTS, {"account_state__exact": "applicant"})) == ["Cy"]
    assert shown(coordinator_client.get(AGENTS, {"language": "de"})) == ["Maja"]
    assert shown(coordinator_client.get(AGENTS, {"language": "en"})) == ["Bo", "Cy", "Maja"]
    assert shown(coordinator_client.get(AGENTS, {"skills__id__exact": refunds.pk})) == [
        "Bo",
        "Maja",
    ]
    assert shown(coordinator_client.get(AGENTS, {"q": "berg"})) == ["Bo"]


# -- approve ----------------------------------------------------------------------------------


def test_approve_makes_an_applicant_active_and_refuses_anyone_else(coordinator_client, pool):
    # given
    maja, _, cy = pool

    # when
    response = act(coordinator_client, "approve", [maja, cy])

    # then
    assert messages_of(response) == [
        "Maja is active: only an applicant can be approved.",
        "Approved: Cy.",
    ]
    assert list(Agent.objects.order_by("display_name").values_list("account_state", flat=True)) == [
        "active",
        "active",
        "active",
    ]
    assert [(entry.object_id, entry.get_change_message()) for entry in LogEntry.objects.all()] == [
        (str(cy.pk), "Approved")
    ]


# -- suspend and set offline, heard by the agent's open tab -----------------------------------


def session_socket_headers(user) -> list[tuple[bytes, bytes]]:
    browser = Client()
    browser.force_login(user)
    return [
        (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://127.0.0.1:8000"),
    ]


async def open_tab(agent: Agent) -> WebsocketCommunicator:
    """The agent's portal tab, connected and past its `hello`."""
    headers = await database_sync_to_async(session_socket_headers)(agent.user)
    socket = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    assert accepted
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    return socket


@pytest.fixture
def maja_at_work(coordinator):
    """Maja, available, holding an assigned ticket (conv-1) and a pending offer (conv-2), both
    handed to her by a coordinator; Bo online with room for both."""
    maja = AgentFactory(status=Agent.Status.AVAILABLE, display_name="Maja")
    bo = AgentFactory(online=True, display_name="Bo", capacity=3)
    assigned = TicketFactory(external_id="conv-1")
    ticket_assign_to(ticket_id=assigned.pk, agent_id=maja.pk, by=coordinator)
    offered = TicketFactory(external_id="conv-2")
    offer = ticket_offer_to(ticket_id=offered.pk, agent_id=maja.pk, by=coordinator)
    return maja, bo, assigned, offer


@pytest.mark.asyncio
async def test_suspend_gives_the_agents_work_to_others_and_closes_its_sockets_with_4403(
    coordinator_client, coordinator, maja_at_work
):
    # given: Maja's portal tab is open
    maja, bo, assigned, offer = maja_at_work
    socket = await open_tab(maja)

    # when
    response = await database_sync_to_async(act)(coordinator_client, "suspend", [maja])

    # then her tab hears what was taken from her, in ticket order, and is closed
    taken_back = {
        assigned.pk: {"type": "ticket.requeued", "ticket_id": str(assigned.pk)},
        offer.ticket_id: {"type": "offer.revoked", "offer_id": str(offer.pk)},
    }
    expected = [{"type": "status", "status": "offline"}] + [
        {**taken_back[ticket_id], "reason": "reassigned"} for ticket_id in sorted(taken_back)
    ]
    assert [await socket.receive_json_from(timeout=TIMEOUT) for _ in expected] == expected
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": 4403,
    }
    await socket.disconnect(code=4403)

    @database_sync_to_async
    def outcome():
        maja.refresh_from_db()
        return (
            (maja.account_state, maja.status),
            AgentConnection.objects.filter(agent=maja).count(),
            {
                ticket.external_id: (
                    ticket.status,
                    [event[:5] for event in events(ticket)],
                    ticket.events.filter(actor=coordinator).last().detail,
                )
                for ticket in Ticket.objects.order_by("external_id")
            },
            list(Offer.objects.filter(status="pending").values_list("agent", flat=True)),
            [(entry.object_id, entry.get_change_message()) for entry in LogEntry.objects.all()],
            messages_of(response),
        )

    state, connections, tickets, pending, log, shown_messages = await outcome()
    note = {"reason": "reassigned", "note": "The agent was suspended."}
    assert state == ("suspended", "offline")
    assert connections == 0
    assert tickets == {
        "conv-1": (
            "offered",
            [
                ("assigned", "queued", "assigned", maja.pk, coordinator.pk),
                ("requeued", "assigned", "queued", maja.pk, coordinator.pk),
                ("offered", "queued", "offered", bo.pk, None),
            ],
            note,
        ),
        "conv-2": (
            "offered",
            [
                ("offered", "queued", "offered", maja.pk, coordinator.pk),
                ("revoked", "offered", "queued", maja.pk, coordinator.pk),
                ("offered", "queued", "offered", bo.pk, None),
            ],
            note,
        ),
    }
    assert pending == [bo.pk, bo.pk]
    assert log == [(str(maja.pk), "Suspended")]
    assert shown_messages == ["Suspended: Maja."]


@pytest.mark.asyncio
async def test_set_offline_routes_the_pending_offers_to_others_and_tells_the_tab(
    coordinator_client, coordinator, maja_at_work
):
    # given: Maja's portal tab is open
    maja, bo, assigned, offer = maja_at_work
    socket = await open_tab(maja)

    # when
    response = await database_sync_to_async(act)(coordinator_client, "set_offline", [maja])

    # then her tab hears her new status and loses the offer, and stays open
    assert [await socket.receive_json_from(timeout=TIMEOUT) for _ in range(2)] == [
        {"type": "status", "status": "offline"},
        {"type": "offer.revoked", "offer_id": str(offer.pk), "reason": "offline"},
    ]
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()

    @database_sync_to_async
    def outcome():
        maja.refresh_from_db()
        offered = Ticket.objects.get(pk=offer.ticket_id)
        return (
            (maja.account_state, maja.status),
            Ticket.objects.filter(pk=assigned.pk).values_list("status", "agent").get(),
            offered.status,
            [event[:5] for event in events(offered)],
            offered.events.get(kind="revoked").detail,
            messages_of(response),
        )

    state, assigned_now, offered_status, offered_events, revoked_detail, shown = await outcome()
    assert state == ("active", "offline")
    assert assigned_now == ("assigned", maja.pk)
    assert offered_status == "offered"
    assert offered_events == [
        ("offered", "queued", "offered", maja.pk, coordinator.pk),
        ("revoked", "offered", "queued", maja.pk, coordinator.pk),
        ("offered", "queued", "offered", bo.pk, None),
    ]
    assert revoked_detail == {"reason": "offline"}
    assert shown == ["Set offline: Maja."]


def test_suspending_from_the_agents_page_gives_its_work_to_others_too(
    coordinator_client, coordinator, maja_at_work
):
    # given: the change page of Maja, who has no languages, skills or windows to post back
    maja, bo, assigned, offer = maja_at_work
    AgentLanguage.objects.filter(agent=maja).delete()
    url = f"{AGENTS}{maja.pk}/change/"
    page = coordinator_client.get(url)
    data = {
        "user": maja.user_id,
        "display_name": "Maja",
        "capacity": 2,
        "account_state": "suspended",
        "status": "available",
        "pay_rate": "0.00",
        "time_zone": "UTC",
        "consecutive_misses": 0,
    }
    for inline in page.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})

    # when
    response = coordinator_client.post(url, data)

    # then
    assert response.status_code == 302
    maja.refresh_from_db()
    assert (maja.account_state, maja.status) == ("suspended", "offline")
    assert list(
        Offer.objects.filter(status=Offer.Status.PENDING)
        .order_by("ticket")
        .values_list("ticket", "agent")
    ) == sorted([(assigned.pk, bo.pk), (offer.ticket_id, bo.pk)])
    assert assigned.events.get(kind="requeued").actor == coordinator


# -- who may --------------------------------------------------------------------------------


def test_someone_who_is_not_staff_is_sent_to_the_log_in(client, pool):
    # given: an agent, logged in
    maja, _, cy = pool
    client.force_login(maja.user)

    # when
    listing = client.get(AGENTS)
    action = client.post(AGENTS, {"action": "approve", "_selected_action": [str(cy.pk)]})

    # then
    assert (listing.status_code, listing["Location"]) == (302, f"/admin/login/?next={AGENTS}")
    assert (action.status_code, action["Location"]) == (302, f"/admin/login/?next={AGENTS}")
    cy.refresh_from_db()
    assert cy.account_state == Agent.AccountState.APPLICANT
