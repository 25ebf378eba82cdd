"""The agent websocket (contract section 5), through the whole ASGI stack (origin check,
session and token authentication) and the real Redis channel layer."""

import threading
from datetime import timedelta

import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from agents.models import Agent, AgentConnection
from dispatch.asgi import application
from dispatch.models import DispatchPolicy, Offer
from dispatch.presence import presence_sweep
from dispatch.services import offer_accept, offer_decline, offer_expire, ticket_route
from tests.factories import AgentFactory, TicketFactory, UserFactory
from tickets.models import Message, Ticket
from tickets.services import ticket_add_agent_message, ticket_add_customer_message, ticket_cancel

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5


def communicator(*headers: tuple[bytes, bytes], path: str = "/ws/agent/") -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=list(headers))


def token_header(user) -> tuple[bytes, bytes]:
    key = AuthToken.objects.create(user=user)[1]
    return (b"authorization", f"Token {key}".encode())


def profile(agent: Agent, *, status: str = "available", active_tickets: int = 0) -> dict:
    return {
        "username": agent.user.username,
        "display_name": agent.display_name,
        "status": status,
        "languages": ["en"],
        "skills": [],
        "capacity": agent.capacity,
        "active_tickets": active_tickets,
    }


def message_json(message: Message) -> dict:
    return {
        "id": str(message.pk),
        "role": message.role,
        "text": message.text,
        "sent_at": message.sent_at.isoformat(),
    }


def offer_json(offer: Offer, *, waiting_seconds: int) -> dict:
    ticket = Ticket.objects.get(pk=offer.ticket_id)
    return {
        "id": str(offer.pk),
        "expires_at": offer.expires_at.isoformat(),
        "ticket": {
            "id": str(ticket.pk),
            "language": ticket.language,
            "skills": [],
            "priority": "normal",
            "reason": "customer_requested",
            "summary": ticket.summary,
            "customer": {"name": "Anna", "tier": ""},
            "transcript": [message_json(m) for m in ticket.messages.order_by("position")],
            "waiting_seconds": waiting_seconds,
        },
    }


def assigned_ticket_json(ticket: Ticket) -> dict:
    ticket = Ticket.objects.select_related("agent").get(pk=ticket.pk)
    return {
        "id": str(ticket.pk),
        "external_id": ticket.external_id,
        "status": "assigned",
        "priority": "normal",
        "language": ticket.language,
        "skills": [],
        "queue_position": None,
        "estimated_wait_seconds": None,
        "agent": {"display_name": ticket.agent.display_name},
        "sla_breached": False,
        "created_at": ticket.created_at.isoformat(),
        "assigned_at": ticket.assigned_at.isoformat(),
        "resolved_at": None,
        "resolution": None,
        "summary": ticket.summary,
        "reason": "customer_requested",
        "customer": {"name": "Anna", "tier": ""},
        "messages": [message_json(m) for m in ticket.messages.order_by("position")],
    }


def waiting_ticket(*, waited_seconds: int, **kwargs) -> Ticket:
    """A queued ticket, written without a routing task, that has waited this long."""
    ticket = TicketFactory(**kwargs)
    Ticket.objects.filter(pk=ticket.pk).update(
        created_at=timezone.now() - timedelta(seconds=waited_seconds)
    )
    return ticket


def available_agent(**kwargs) -> Agent:
    """An active, available agent with no socket yet: the test's socket makes it routable."""
    return AgentFactory(status=Agent.Status.AVAILABLE, **kwargs)


async def last_seen(agent: Agent):
    return await database_sync_to_async(
        lambda: Agent.objects.values_list("last_seen_at", flat=True).get(pk=agent.pk)
    )()


async def connected(*headers: tuple[bytes, bytes]) -> tuple[WebsocketCommunicator, dict]:
    """Open a socket that must be accepted; returns it and its first frame."""
    socket = communicator(*headers)
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    assert accepted
    return socket, await socket.receive_json_from(timeout=TIMEOUT)


# -- who may connect --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Token not-a-real-token")]],
    ids=["no credentials", "unknown token"],
)
async def test_an_unauthenticated_socket_is_accepted_then_closed_with_4401(headers):
    # given
    socket = communicator(*headers)

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    closed = await socket.receive_output(timeout=TIMEOUT)

    # then
    assert accepted is True
    assert closed == {"type": "websocket.close", "code": 4401}
    await socket.disconnect(code=4401)


@pytest.mark.parametrize("who", ["not an agent", "suspended agent", "applicant"])
async def test_a_user_who_is_not_an_active_agent_is_closed_with_4403(who):
    # given
    @database_sync_to_async
    def user():
        if who == "not an agent":
            return token_header(UserFactory())
        state = {
            "suspended agent": Agent.AccountState.SUSPENDED,
            "applicant": Agent.AccountState.APPLICANT,
        }[who]
        return token_header(available_agent(account_state=state).user)

    socket = communicator(await user())

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    closed = await socket.receive_output(timeout=TIMEOUT)

    # then
    assert accepted is True
    assert closed == {"type": "websocket.close", "code": 4403}
    assert await database_sync_to_async(AgentConnection.objects.count)() == 0
    await socket.disconnect(code=4403)


async def test_a_foreign_origin_is_refused():
    # given: valid credentials from a page on another site
    header = await database_sync_to_async(lambda: token_header(available_agent().user))()
    socket = communicator(header, (b"origin", b"https://evil.example"))

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)

    # then
    assert accepted is False
    assert await database_sync_to_async(AgentConnection.objects.count)() == 0


async def test_an_allowed_origin_is_accepted():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)

    # when
    socket, hello = await connected(header, (b"origin", b"http://localhost:8000"))

    # then
    assert hello["type"] == "hello"
    await socket.disconnect()


async def test_a_browser_session_cookie_authenticates():
    # given: an agent logged in to the portal
    @database_sync_to_async
    def logged_in():
        agent = available_agent()
        browser = Client()
        browser.force_login(agent.user)
        return agent, browser.cookies["sessionid"].value

    agent, session_key = await logged_in()

    # when
    socket, hello = await connected(
        (b"cookie", f"sessionid={session_key}".encode()), (b"origin", b"http://127.0.0.1:8000")
    )

    # then
    assert hello == {"type": "hello", "agent": profile(agent), "offers": [], "tickets": []}
    await socket.disconnect()


# -- hello, heartbeat, presence ---------------------------------------------------------------


async def test_hello_carries_the_profile_pending_offers_and_assigned_tickets():
    # given: an agent (capacity 2) holding one assigned ticket and one pending offer
    @database_sync_to_async
    def agent_with_work():
        agent = AgentFactory(online=True, display_name="Maja")
        assigned = waiting_ticket(waited_seconds=200, summary="Refund please")
        Message.objects.create(
            ticket=assigned, position=1, role="customer", text="Hi", sent_at=timezone.now()
        )
        offer_accept(offer_id=ticket_route(ticket_id=assigned.pk).pk, agent=agent)
        offered = waiting_ticket(waited_seconds=120)
        offer = ticket_route(ticket_id=offered.pk)
        return agent, assigned, offer

    agent, assigned, offer = await agent_with_work()
    header = await database_sync_to_async(token_header)(agent.user)

    # when
    socket, hello = await connected(header)

    # then
    expected = await database_sync_to_async(
        lambda: {
            "type": "hello",
            "agent": profile(agent, active_tickets=1),
            "offers": [offer_json(offer, waiting_seconds=120)],
            "tickets": [assigned_ticket_json(assigned)],
        }
    )()
    assert hello == expected
    await socket.disconnect()


async def test_connecting_records_a_connection_and_disconnecting_removes_it():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    before = timezone.now()
    socket, _ = await connected(header)
    connections = await database_sync_to_async(
        lambda: list(AgentConnection.objects.values_list("agent", flat=True))
    )()
    seen_on_connect = await last_seen(agent)

    # when
    closing = timezone.now()
    await socket.disconnect()

    # then: the agent was last seen when its socket closed, the moment it stopped counting
    assert connections == [agent.pk]
    assert before <= seen_on_connect <= closing
    assert await database_sync_to_async(AgentConnection.objects.count)() == 0
    assert closing <= await last_seen(agent) <= timezone.now()


async def test_closing_a_socket_that_had_gone_stale_dates_the_absence_from_its_staleness():
    # given: a socket whose last heartbeat was 100 s ago (the time-out is 60 s), not yet swept
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    last_heartbeat = timezone.now() - timedelta(seconds=100)
    await database_sync_to_async(
        lambda: AgentConnection.objects.filter(agent=agent).update(last_heartbeat_at=last_heartbeat)
    )()
    await database_sync_to_async(
        lambda: Agent.objects.filter(pk=agent.pk).update(last_seen_at=last_heartbeat)
    )()

    # when
    await socket.disconnect()

    # then: gone since it stopped counting, not since it closed
    assert await last_seen(agent) == last_heartbeat + timedelta(seconds=60)


async def test_a_heartbeat_is_acknowledged_and_refreshes_presence():
    # given: a socket whose last heartbeat was 50 s ago
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    earlier = timezone.now() - timedelta(seconds=50)
    await database_sync_to_async(
        lambda: AgentConnection.objects.filter(agent=agent).update(last_heartbeat_at=earlier)
    )()
    sent_at = timezone.now()

    # when
    await socket.send_json_to({"type": "heartbeat"})
    ack = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert ack == {"type": "heartbeat.ack", "offers": [], "tickets": []}
    connection = await database_sync_to_async(AgentConnection.objects.get)(agent=agent)
    assert connection.last_heartbeat_at >= sent_at
    assert await last_seen(agent) >= sent_at
    await socket.disconnect()


async def test_a_heartbeat_answer_names_the_agents_pending_offers_and_assigned_tickets():
    # given: an agent holding one assigned ticket and two pending offers, and another agent
    # holding an offer of its own
    agent = await database_sync_to_async(available_agent)(capacity=3)
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    offers = [
        await database_sync_to_async(
            lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
        )()
        for _ in range(3)
    ]
    assigned = await database_sync_to_async(offer_accept)(offer_id=offers[0].pk, agent=agent)
    frames = [await socket.receive_json_from(timeout=TIMEOUT) for _ in range(4)]
    assert [frame["type"] for frame in frames] == ["offer.created"] * 3 + ["ticket.assigned"]
    await database_sync_to_async(
        lambda: Offer.objects.create(
            ticket=waiting_ticket(waited_seconds=5),
            agent=AgentFactory(),
            expires_at=timezone.now() + timedelta(seconds=30),
        )
    )()

    # when
    await socket.send_json_to({"type": "heartbeat"})
    ack = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert ack == {
        "type": "heartbeat.ack",
        "offers": sorted(str(offer.pk) for offer in offers[1:]),
        "tickets": [str(assigned.pk)],
    }
    await socket.disconnect()


async def test_a_socket_that_heartbeats_again_after_going_stale_is_resynced_with_hello():
    # given: a tab that froze for 70 s with a pending offer, and the sweep took the agent
    # offline and revoked the offer meanwhile (frames the frozen tab may never have read)
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    offer = await database_sync_to_async(
        lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
    )()
    frozen_at = timezone.now() - timedelta(seconds=100)
    await database_sync_to_async(
        lambda: AgentConnection.objects.filter(agent=agent).update(last_heartbeat_at=frozen_at)
    )()
    await database_sync_to_async(
        lambda: Agent.objects.filter(pk=agent.pk).update(last_seen_at=frozen_at)
    )()
    await database_sync_to_async(presence_sweep)()
    missed = [await socket.receive_json_from(timeout=TIMEOUT) for _ in range(3)]
    assert [frame["type"] for frame in missed] == ["offer.created", "offer.revoked", "status"]
    assert await database_sync_to_async(AgentConnection.objects.count)() == 0

    # when the tab wakes up and heartbeats
    await socket.send_json_to({"type": "heartbeat"})
    hello = await socket.receive_json_from(timeout=TIMEOUT)
    ack = await socket.receive_json_from(timeout=TIMEOUT)

    # then it is resynced as on a reconnect, and counts again
    assert hello == {
        "type": "hello",
        "agent": profile(agent, status="offline"),
        "offers": [],
        "tickets": [],
    }
    assert ack == {"type": "heartbeat.ack", "offers": [], "tickets": []}
    connection = await database_sync_to_async(AgentConnection.objects.get)(agent=agent)
    assert connection.last_heartbeat_at > frozen_at
    await database_sync_to_async(offer.refresh_from_db)()
    assert offer.status == Offer.Status.REVOKED
    await socket.disconnect()


def suspend(agent: Agent) -> None:
    Agent.objects.filter(pk=agent.pk).update(account_state=Agent.AccountState.SUSPENDED)


def deactivate_user(agent: Agent) -> None:
    get_user_model().objects.filter(pk=agent.user_id).update(is_active=False)


@pytest.mark.parametrize("revoke", [suspend, deactivate_user])
async def test_a_heartbeat_from_an_agent_suspended_or_deactivated_since_connecting_closes_with_4403(
    revoke,
):
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    await database_sync_to_async(revoke)(agent)

    # when
    await socket.send_json_to({"type": "heartbeat"})
    closed = await socket.receive_output(timeout=TIMEOUT)

    # then
    assert closed == {"type": "websocket.close", "code": 4403}
    await socket.disconnect(code=4403)
    assert await database_sync_to_async(AgentConnection.objects.count)() == 0


async def test_a_reconnect_resyncs_what_dropped_frames_lost():
    # given: an agent whose socket dropped before it read its frames (an assigned ticket and a
    # new offer), and a customer message pushed while no socket was open
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    @database_sync_to_async
    def work_arrives():
        assigned = waiting_ticket(waited_seconds=100)
        offer_accept(offer_id=ticket_route(ticket_id=assigned.pk).pk, agent=agent)
        return assigned, ticket_route(ticket_id=waiting_ticket(waited_seconds=10).pk)

    assigned, offer = await work_arrives()
    await socket.disconnect()
    await database_sync_to_async(ticket_add_customer_message)(
        ticket_id=assigned.pk, text="Are you still there?"
    )

    # when
    socket, hello = await connected(header)

    # then
    expected = await database_sync_to_async(
        lambda: {
            "type": "hello",
            "agent": profile(agent, active_tickets=1),
            "offers": [offer_json(offer, waiting_seconds=10)],
            "tickets": [assigned_ticket_json(assigned)],
        }
    )()
    assert hello == expected
    assert hello["tickets"][0]["messages"][-1]["text"] == "Are you still there?"
    await socket.disconnect()


# -- client frames ----------------------------------------------------------------------------


async def test_status_set_changes_the_status_and_answers_with_a_status_frame():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    # when
    await socket.send_json_to({"type": "status.set", "status": "away"})
    frame = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert frame == {"type": "status", "status": "away"}
    await database_sync_to_async(agent.refresh_from_db)()
    assert agent.status == Agent.Status.AWAY
    await socket.disconnect()


async def test_status_set_with_an_unknown_status_is_an_error():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    # when
    await socket.send_json_to({"type": "status.set", "status": "busy"})
    frame = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert frame == {"type": "error", "detail": "Unknown status: 'busy'."}
    await socket.disconnect()


async def test_an_offer_made_while_connected_arrives_and_accepting_it_assigns_the_ticket():
    # given: a connected agent with nothing to do yet
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, hello = await connected(header)
    assert (hello["offers"], hello["tickets"]) == ([], [])

    # when: a ticket is routed to the agent
    @database_sync_to_async
    def route():
        return ticket_route(ticket_id=waiting_ticket(waited_seconds=45).pk)

    offer = await route()
    created = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    expected = await database_sync_to_async(offer_json)(offer, waiting_seconds=45)
    assert created == {"type": "offer.created", "offer": expected}

    # when: the agent accepts it
    await socket.send_json_to({"type": "offer.accept", "offer_id": str(offer.pk)})
    assigned = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    ticket = await database_sync_to_async(Ticket.objects.get)(pk=offer.ticket_id)
    expected = await database_sync_to_async(assigned_ticket_json)(ticket)
    assert assigned == {"type": "ticket.assigned", "ticket": expected}
    assert (ticket.status, ticket.agent_id) == (Ticket.Status.ASSIGNED, agent.pk)
    await socket.disconnect()


async def test_sockets_carry_frames_and_answers_while_channels_shared_sync_thread_is_busy():
    # given: a connected agent, and the one thread that Channels runs sync code in by default
    # held by something slow (on a server with a thousand sockets: everyone else's work)
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    release = threading.Event()
    busy = SyncToAsync.single_thread_executor.submit(release.wait)
    try:
        # when: a ticket is routed to the agent, who heartbeats and accepts it
        ticket = await database_sync_to_async(waiting_ticket, thread_sensitive=False)(
            waited_seconds=5
        )
        offer = await database_sync_to_async(ticket_route, thread_sensitive=False)(
            ticket_id=ticket.pk
        )
        created = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.send_json_to({"type": "heartbeat"})
        ack = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.send_json_to({"type": "offer.accept", "offer_id": str(offer.pk)})
        assigned = await socket.receive_json_from(timeout=TIMEOUT)
    finally:
        release.set()
        busy.result()

    # then: none of it waited for that thread
    assert (created["type"], created["offer"]["id"]) == ("offer.created", str(offer.pk))
    assert ack == {"type": "heartbeat.ack", "offers": [str(offer.pk)], "tickets": []}
    assert (assigned["type"], assigned["ticket"]["id"]) == ("ticket.assigned", str(offer.ticket_id))
    await socket.disconnect()


async def test_hello_comes_first_when_connecting_drains_waiting_work():
    # given: a ticket waiting for an available agent who has no socket open
    @database_sync_to_async
    def given():
        return available_agent(), waiting_ticket(waited_seconds=30)

    agent, ticket = await given()
    header = await database_sync_to_async(token_header)(agent.user)

    # when: connecting makes the agent routable, and the ticket is offered at once
    socket, hello = await connected(header)
    created = await socket.receive_json_from(timeout=TIMEOUT)

    # then: the offer is in the resync, and its live frame follows
    offer = await database_sync_to_async(Offer.objects.get)(ticket=ticket)
    expected = await database_sync_to_async(offer_json)(offer, waiting_seconds=30)
    assert hello == {
        "type": "hello",
        "agent": profile(agent),
        "offers": [expected],
        "tickets": [],
    }
    assert created == {"type": "offer.created", "offer": expected}
    await socket.disconnect()


async def test_offer_decline_passes_the_ticket_on():
    # given: a connected agent with a pending offer
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    offer = await database_sync_to_async(
        lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
    )()
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created

    # when
    await socket.send_json_to(
        {"type": "offer.decline", "offer_id": str(offer.pk), "reason": "Busy"}
    )
    await socket.send_json_to({"type": "heartbeat"})
    after = await socket.receive_json_from(timeout=TIMEOUT)

    # then: no answer but the heartbeat's; the decline is written
    assert after == {"type": "heartbeat.ack", "offers": [], "tickets": []}
    await database_sync_to_async(offer.refresh_from_db)()
    assert (offer.status, offer.decline_reason) == (Offer.Status.DECLINED, "Busy")
    await socket.disconnect()


async def test_accepting_an_offer_that_is_no_longer_pending_is_an_error_and_the_socket_stays():
    # given: an offer the agent already declined
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    @database_sync_to_async
    def declined_offer():
        offer = ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
        offer_decline(offer_id=offer.pk, agent=agent)
        return offer

    offer = await declined_offer()
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created

    # when
    await socket.send_json_to({"type": "offer.accept", "offer_id": str(offer.pk)})
    error = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert error == {"type": "error", "detail": "The offer is no longer pending (it is declined)."}
    await socket.send_json_to({"type": "heartbeat"})
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "heartbeat.ack",
        "offers": [],
        "tickets": [],
    }
    await socket.disconnect()


@pytest.mark.parametrize(
    ("offer_id", "detail"),
    [
        ("not-a-uuid", "offer_id must be an offer's id."),
        ("7b0c0e6e-0000-4000-8000-000000000000", "No such offer."),
    ],
)
async def test_accepting_an_unknown_offer_is_an_error(offer_id, detail):
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    # when
    await socket.send_json_to({"type": "offer.accept", "offer_id": offer_id})
    error = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert error == {"type": "error", "detail": detail}
    await socket.disconnect()


async def test_another_agents_offer_cannot_be_accepted():
    # given: an offer to a Swedish speaker
    @database_sync_to_async
    def given():
        AgentFactory(online=True, languages=["sv"])
        offer = ticket_route(ticket_id=waiting_ticket(waited_seconds=5, language="sv").pk)
        return available_agent(), offer

    agent, offer = await given()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    # when
    await socket.send_json_to({"type": "offer.accept", "offer_id": str(offer.pk)})
    error = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert error == {"type": "error", "detail": "No such offer."}
    await database_sync_to_async(offer.refresh_from_db)()
    assert offer.status == Offer.Status.PENDING
    await socket.disconnect()


async def test_an_unknown_frame_type_is_an_error_and_the_socket_stays():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    # when
    await socket.send_json_to({"type": "bogus"})
    error = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert error == {"type": "error", "detail": "Unknown frame type: 'bogus'."}
    await socket.send_json_to({"type": "heartbeat"})
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "heartbeat.ack",
        "offers": [],
        "tickets": [],
    }
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ({"text_data": "not json"}, "Frames must be JSON text."),
        ({"bytes_data": b"\x00\x01"}, "Frames must be JSON text."),
        ({"text_data": "[1, 2]"}, "Unknown frame type: None."),
    ],
    ids=["not json", "binary", "not an object"],
)
async def test_a_malformed_frame_is_an_error_and_the_socket_stays(frame, detail):
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    # when
    await socket.send_to(**frame)
    error = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert error == {"type": "error", "detail": detail}
    await socket.send_json_to({"type": "heartbeat"})
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "heartbeat.ack",
        "offers": [],
        "tickets": [],
    }
    await socket.disconnect()


async def test_a_status_change_reaches_every_tab_and_closing_one_tab_keeps_the_other():
    # given: the agent has two tabs open
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    first, _ = await connected(header)
    second, _ = await connected(header)

    # when
    await first.send_json_to({"type": "status.set", "status": "away"})

    # then
    assert await first.receive_json_from(timeout=TIMEOUT) == {"type": "status", "status": "away"}
    assert await second.receive_json_from(timeout=TIMEOUT) == {"type": "status", "status": "away"}

    # when
    await first.disconnect()

    # then
    assert await database_sync_to_async(AgentConnection.objects.count)() == 1
    await second.disconnect()
    assert await database_sync_to_async(AgentConnection.objects.count)() == 0


@pytest.mark.parametrize(
    ("reason", "detail"),
    [
        ("x" * 501, "reason must be text of at most 500 characters."),
        (["not", "text"], "reason must be text of at most 500 characters."),
        ("a\x00b", "reason must not contain NUL characters."),
    ],
    ids=["too long", "not text", "NUL"],
)
async def test_a_bad_decline_reason_is_an_error_and_the_offer_stays_pending(reason, detail):
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    offer = await database_sync_to_async(
        lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
    )()
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created

    # when
    await socket.send_json_to(
        {"type": "offer.decline", "offer_id": str(offer.pk), "reason": reason}
    )
    error = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert error == {"type": "error", "detail": detail}
    await database_sync_to_async(offer.refresh_from_db)()
    assert offer.status == Offer.Status.PENDING
    await socket.disconnect()


async def test_an_inactive_users_token_is_closed_with_4401():
    # given: a valid token of a user who was deactivated
    @database_sync_to_async
    def deactivated():
        agent = available_agent()
        header = token_header(agent.user)
        agent.user.is_active = False
        agent.user.save(update_fields=["is_active"])
        return header

    socket = communicator(await deactivated())

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    closed = await socket.receive_output(timeout=TIMEOUT)

    # then
    assert accepted is True
    assert closed == {"type": "websocket.close", "code": 4401}
    await socket.disconnect(code=4401)


# -- server frames, whatever caused them ------------------------------------------------------


async def test_setting_the_status_it_already_has_is_confirmed():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    # when
    await socket.send_json_to({"type": "status.set", "status": "available"})

    # then
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "status",
        "status": "available",
    }
    await socket.disconnect()


def admin_change_form(client: Client, url: str) -> dict:
    """The admin's change form as it is shown, as the browser would post it back."""
    page = client.get(url)
    assert page.status_code == 200
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            key = form.add_prefix(name)
            if value is True:
                data[key] = "on"
            elif isinstance(value, list | tuple):
                data[key] = [str(getattr(item, "pk", item)) for item in value]
            else:
                data[key] = str(getattr(value, "pk", value))
    return data


async def test_a_coordinators_status_change_in_the_admin_reaches_the_agents_tabs():
    # given: a connected agent, and a coordinator in the admin
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    @database_sync_to_async
    def coordinator_sets_away():
        coordinator = UserFactory(is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(coordinator)
        url = f"/admin/agents/agent/{agent.pk}/change/"
        data = admin_change_form(client, url)
        data["status"] = "away"
        return client.post(url, data)

    # when
    response = await coordinator_sets_away()

    # then
    assert response.status_code == 302
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "status", "status": "away"}
    await database_sync_to_async(agent.refresh_from_db)()
    assert agent.status == Agent.Status.AWAY
    await socket.disconnect()


async def test_missing_offers_in_a_row_sets_the_agent_away_and_its_tabs_hear_it():
    # given: the policy sets an agent away after one missed offer, and an offer that ran out
    await database_sync_to_async(
        lambda: DispatchPolicy.objects.update_or_create(
            pk=1, defaults={"max_consecutive_misses": 1}
        )
    )()
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    offer = await database_sync_to_async(
        lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
    )()
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created
    await database_sync_to_async(
        lambda: Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now())
    )()

    # when
    await database_sync_to_async(offer_expire)(offer_id=offer.pk)

    # then
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "offer.revoked",
        "offer_id": str(offer.pk),
        "reason": "expired",
    }
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "status", "status": "away"}
    await socket.disconnect()


async def test_accepting_an_expired_offer_is_an_error_and_the_socket_stays():
    # given: an offer past its expiry that no timer has expired yet
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    offer = await database_sync_to_async(
        lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
    )()
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created
    await database_sync_to_async(
        lambda: Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now())
    )()

    # when
    await socket.send_json_to({"type": "offer.accept", "offer_id": str(offer.pk)})
    error = await socket.receive_json_from(timeout=TIMEOUT)

    # then
    assert error == {"type": "error", "detail": "The offer is no longer pending (it is expired)."}
    await socket.send_json_to({"type": "heartbeat"})
    # Still pending in the database, as `hello` would say, until its timer or the sweep runs.
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "heartbeat.ack",
        "offers": [str(offer.pk)],
        "tickets": [],
    }
    await socket.disconnect()


async def test_a_ticket_cancelled_while_offered_revokes_the_offer():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)
    offer = await database_sync_to_async(
        lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
    )()
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created

    # when the customer leaves
    await database_sync_to_async(ticket_cancel)(ticket_id=offer.ticket_id)

    # then
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "offer.revoked",
        "offer_id": str(offer.pk),
        "reason": "cancelled",
    }
    await socket.disconnect()


async def test_a_ticket_cancelled_while_assigned_is_announced():
    # given
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    @database_sync_to_async
    def assigned():
        ticket = waiting_ticket(waited_seconds=5)
        offer_accept(offer_id=ticket_route(ticket_id=ticket.pk).pk, agent=agent)
        return ticket

    ticket = await assigned()
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created
    await socket.receive_json_from(timeout=TIMEOUT)  # ticket.assigned

    # when the customer leaves
    await database_sync_to_async(ticket_cancel)(ticket_id=ticket.pk)

    # then
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "ticket.cancelled",
        "ticket_id": str(ticket.pk),
    }
    await socket.disconnect()


async def test_messages_reach_every_tab_including_the_agents_own_reply():
    # given: an agent with two tabs and an assigned ticket
    agent = await database_sync_to_async(available_agent)()
    header = await database_sync_to_async(token_header)(agent.user)
    first, _ = await connected(header)
    second, _ = await connected(header)

    @database_sync_to_async
    def assigned():
        ticket = waiting_ticket(waited_seconds=5)
        offer_accept(offer_id=ticket_route(ticket_id=ticket.pk).pk, agent=agent)
        return ticket

    ticket = await assigned()
    for tab in (first, second):
        assert (await tab.receive_json_from(timeout=TIMEOUT))["type"] == "offer.created"
        assert (await tab.receive_json_from(timeout=TIMEOUT))["type"] == "ticket.assigned"

    # when the customer writes, and the agent answers from one tab (over REST)
    customer = await database_sync_to_async(ticket_add_customer_message)(
        ticket_id=ticket.pk, text="Hello?"
    )
    reply = await database_sync_to_async(ticket_add_agent_message)(
        ticket_id=ticket.pk, agent=agent, text="Hi, I am here."
    )

    # then both tabs show both messages
    for tab in (first, second):
        assert await tab.receive_json_from(timeout=TIMEOUT) == {
            "type": "ticket.message",
            "ticket_id": str(ticket.pk),
            "message": message_json(customer),
        }
        assert await tab.receive_json_from(timeout=TIMEOUT) == {
            "type": "ticket.message",
            "ticket_id": str(ticket.pk),
            "message": message_json(reply),
        }
    await first.disconnect()
    await second.disconnect()


# -- the coordinators' board ------------------------------------------------------------------


def board(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return communicator(*headers, path="/ws/board/")


@pytest.mark.parametrize(
    ("who", "code"),
    [("nobody", 4401), ("an agent", 4403), ("a deactivated coordinator", 4401)],
)
async def test_only_staff_may_watch_the_board(who, code):
    # given
    @database_sync_to_async
    def headers():
        if who == "nobody":
            return []
        if who == "an agent":
            return [token_header(available_agent().user)]
        return [token_header(UserFactory(is_staff=True, is_active=False))]

    socket = board(*await headers())

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    closed = await socket.receive_output(timeout=TIMEOUT)

    # then
    assert accepted is True
    assert closed == {"type": "websocket.close", "code": code}
    await socket.disconnect(code=code)


async def test_the_board_hears_agent_presence_and_status_and_every_ticket_transition():
    # given: a coordinator watching the board from the browser
    @database_sync_to_async
    def coordinator_session():
        browser = Client()
        browser.force_login(UserFactory(is_staff=True))
        return browser.cookies["sessionid"].value

    session_key = await coordinator_session()
    watcher = board(
        (b"cookie", f"sessionid={session_key}".encode()), (b"origin", b"http://localhost:8000")
    )
    accepted, _ = await watcher.connect(timeout=TIMEOUT)
    assert accepted is True
    agent = await database_sync_to_async(available_agent)(display_name="Maja")
    header = await database_sync_to_async(token_header)(agent.user)

    # when an agent connects, is offered a ticket, goes away and closes its tab
    socket, _ = await connected(header)
    offer = await database_sync_to_async(
        lambda: ticket_route(ticket_id=waiting_ticket(waited_seconds=5).pk)
    )()
    await socket.send_json_to({"type": "status.set", "status": "away"})
    await socket.receive_json_from(timeout=TIMEOUT)  # offer.created
    await socket.receive_json_from(timeout=TIMEOUT)  # status
    await socket.disconnect()

    # then the board hears each change, in order
    frames = [await watcher.receive_json_from(timeout=TIMEOUT) for _ in range(4)]
    await database_sync_to_async(agent.refresh_from_db)()
    connected_at = frames[0].pop("last_seen_at")
    event = await database_sync_to_async(
        lambda: Ticket.objects.get(pk=offer.ticket_id).events.get(kind="offered")
    )()
    assert frames == [
        {
            "type": "agent.presence",
            "agent_id": str(agent.pk),
            "display_name": "Maja",
            "connections": 1,
        },
        {
            "type": "ticket.event",
            "ticket_id": str(offer.ticket_id),
            "kind": "offered",
            "from_status": "queued",
            "to_status": "offered",
            "language": "en",
            "priority": "normal",
            "agent": {"id": str(agent.pk), "display_name": "Maja"},
            "occurred_at": event.occurred_at.isoformat(),
        },
        {
            "type": "agent.status",
            "agent_id": str(agent.pk),
            "display_name": "Maja",
            "status": "away",
        },
        {
            "type": "agent.presence",
            "agent_id": str(agent.pk),
            "display_name": "Maja",
            "connections": 0,
            "last_seen_at": agent.last_seen_at.isoformat(),
        },
    ]
    assert connected_at <= agent.last_seen_at.isoformat()

    # and its heartbeat is answered, and a frame it cannot send is an error
    await watcher.send_json_to({"type": "heartbeat"})
    assert await watcher.receive_json_from(timeout=TIMEOUT) == {"type": "heartbeat.ack"}
    await watcher.send_json_to({"type": "status.set", "status": "away"})
    assert await watcher.receive_json_from(timeout=TIMEOUT) == {
        "type": "error",
        "detail": "Unknown frame type: 'status.set'.",
    }
    await watcher.disconnect()
