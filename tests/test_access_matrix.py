"""Who may see and do what, over the real credentials: bot keys, agent tokens, sessions and
websockets. Each row is a caller trying something that is not theirs, with the exact refusal
and no effect."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from agents.models import Agent, AgentAvailability
from dispatch.asgi import application
from dispatch.models import Offer
from dispatch.services import offer_accept, ticket_route
from tests.factories import AgentFactory, BotIntegrationFactory, TicketFactory, UserFactory
from tests.test_production_settings import PRODUCTION_ENV, manage
from tickets.models import BotIntegration, Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

NOT_FOUND = {"detail": "Not found."}
NO_SUCH_TICKET = {"detail": "No Ticket matches the given query."}
NOT_AN_ACTIVE_AGENT = {"detail": "Only active agents may use this endpoint."}
UNKNOWN_KEY = {"detail": "The API key is unknown or revoked."}
TIMEOUT = 5


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def token_for(agent: Agent) -> str:
    return AuthToken.objects.create(user=agent.user)[1]


def token_client(agent: Agent) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(agent)}")
    return client


def ticket_state(ticket: Ticket) -> tuple:
    ticket = Ticket.objects.get(pk=ticket.pk)
    return ticket.status, ticket.agent_id, ticket.message_count, ticket.csat_score


# --- bots: only their own tickets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "", None),
        ("get", "messages/", None),
        ("post", "messages/", {"text": "Are you there?"}),
        ("post", "cancel/", None),
        ("post", "csat/", {"score": 1}),
    ],
    ids=["detail", "messages", "add a message", "cancel", "csat"],
)
@pytest.mark.parametrize("status", [Ticket.Status.QUEUED, Ticket.Status.RESOLVED])
def test_a_bot_gets_404_for_another_bots_ticket(method, path, body, status):
    # given: bot B's ticket, and bot A
    bot_a, bot_b = BotIntegrationFactory(), BotIntegrationFactory()
    ticket = TicketFactory(integration=bot_b)
    Ticket.objects.filter(pk=ticket.pk).update(status=status)
    before = ticket_state(ticket)

    # when
    response = getattr(bearer(bot_a.api_key), method)(
        f"/api/v1/tickets/{ticket.pk}/{path}", body, format="json"
    )

    # then: as if it did not exist, and untouched
    assert response.status_code == 404
    assert response.json() == NO_SUCH_TICKET
    assert ticket_state(ticket) == before
    # while its own bot may
    assert bearer(bot_b.api_key).get(f"/api/v1/tickets/{ticket.pk}/").status_code == 200


def test_a_key_revoked_in_the_admin_is_refused_at_once():
    # given: a bot in good standing, and a coordinator
    bot = BotIntegrationFactory()
    ticket = TicketFactory(integration=bot)
    client = bearer(bot.api_key)
    assert client.get(f"/api/v1/tickets/{ticket.pk}/").status_code == 200
    coordinator = Client()
    coordinator.force_login(UserFactory(is_staff=True, is_superuser=True))

    # when
    coordinator.post(
        "/admin/tickets/botintegration/", {"action": "revoke", "_selected_action": [bot.pk]}
    )

    # then
    assert BotIntegration.objects.get(pk=bot.pk).is_active is False
    detail = client.get(f"/api/v1/tickets/{ticket.pk}/")
    escalation = client.post(
        "/api/v1/escalations/",
        {"external_id": "conv-9", "language": "en", "customer": {"id": "c"}},
        format="json",
    )
    assert (detail.status_code, escalation.status_code) == (401, 401)
    assert detail.json() == escalation.json() == UNKNOWN_KEY
    assert detail["WWW-Authenticate"] == "Bearer"
    assert Ticket.objects.count() == 1


@pytest.mark.parametrize(
    ("credentials", "path", "detail"),
    [
        (
            "agent token",
            "/api/v1/tickets/{ticket}/",
            "Authentication credentials were not provided.",
        ),
        ("bot key", "/api/v1/agent/me/", "Authentication credentials were not provided."),
        ("nothing", "/api/v1/tickets/{ticket}/", "Authentication credentials were not provided."),
        ("nothing", "/api/v1/agent/me/", "Authentication credentials were not provided."),
    ],
)
def test_one_sides_credentials_do_not_open_the_other_side(credentials, path, detail):
    # given
    bot, agent = BotIntegrationFactory(), AgentFactory()
    ticket = TicketFactory(integration=bot)
    client = {
        "agent token": lambda: token_client(agent),
        "bot key": lambda: bearer(bot.api_key),
        "nothing": APIClient,
    }[credentials]()

    # when
    response = client.get(path.format(ticket=ticket.pk))

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": detail}


# --- agents: only their own offers and tickets ---------------------------------------------------


@pytest.fixture
def two_agents():
    """Agent A (English) and agent B (Swedish), both online; B holds an offer for one Swedish
    ticket and is assigned another."""
    agent_a = AgentFactory(online=True, languages=["en"])
    agent_b = AgentFactory(online=True, languages=["sv"], capacity=2)
    assigned = TicketFactory(language="sv")
    offer_accept(offer_id=ticket_route(ticket_id=assigned.pk).pk, agent=agent_b)
    offered = TicketFactory(language="sv")
    offer = ticket_route(ticket_id=offered.pk)
    assert offer.agent == agent_b
    return agent_a, agent_b, offer, Ticket.objects.get(pk=assigned.pk)


@pytest.mark.parametrize(
    ("path", "body"),
    [("accept", None), ("decline", {"reason": "not mine"})],
)
def test_an_agent_gets_404_for_another_agents_offer(two_agents, path, body):
    # given
    agent_a, agent_b, offer, _ = two_agents

    # when
    response = token_client(agent_a).post(f"/api/v1/offers/{offer.pk}/{path}/", body, "json")

    # then
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    offer.refresh_from_db()
    assert (offer.status, offer.agent) == (Offer.Status.PENDING, agent_b)
    assert [o["id"] for o in token_client(agent_a).get("/api/v1/agent/offers/").json()] == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("messages", {"text": "Hello from someone else"}),
        ("resolve", {"outcome": "solved"}),
        ("release", {"reason": "taking it"}),
    ],
)
def test_an_agent_gets_404_for_another_agents_ticket(two_agents, path, body):
    # given
    agent_a, agent_b, _, ticket = two_agents
    before = ticket_state(ticket)

    # when
    response = token_client(agent_a).post(
        f"/api/v1/agent/tickets/{ticket.pk}/{path}/", body, format="json"
    )

    # then
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert ticket_state(ticket) == before == (Ticket.Status.ASSIGNED, agent_b.pk, 0, None)
    assert not Message.objects.filter(ticket=ticket).exists()
    assert token_client(agent_a).get("/api/v1/agent/tickets/").json() == []


@pytest.mark.asyncio
@pytest.mark.parametrize("frame_type", ["offer.accept", "offer.decline"])
async def test_a_websocket_frame_for_another_agents_offer_is_an_error_with_no_effect(
    two_agents, frame_type
):
    # given: agent A's socket
    agent_a, agent_b, offer, _ = two_agents
    token = await database_sync_to_async(token_for)(agent_a)
    socket = WebsocketCommunicator(
        application, "/ws/agent/", headers=[(b"authorization", f"Token {token}".encode())]
    )
    assert (await socket.connect(timeout=TIMEOUT))[0]
    hello = await socket.receive_json_from(timeout=TIMEOUT)
    assert (hello["type"], hello["offers"], hello["tickets"]) == ("hello", [], [])

    # when
    await socket.send_json_to({"type": frame_type, "offer_id": str(offer.pk)})

    # then
    assert await socket.receive_json_from(timeout=TIMEOUT) == {
        "type": "error",
        "detail": "No such offer.",
    }
    await socket.disconnect()
    offer = await database_sync_to_async(Offer.objects.select_related("agent").get)(pk=offer.pk)
    assert (offer.status, offer.agent.pk) == (Offer.Status.PENDING, agent_b.pk)


# --- suspended agents ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/agent/me/", None),
        ("post", "/api/v1/agent/status/", {"status": "available"}),
        ("get", "/api/v1/agent/offers/", None),
        ("post", "/api/v1/offers/{offer}/accept/", None),
        ("post", "/api/v1/offers/{offer}/decline/", {}),
        ("get", "/api/v1/agent/tickets/", None),
        ("post", "/api/v1/agent/tickets/{ticket}/messages/", {"text": "still here"}),
        ("post", "/api/v1/agent/tickets/{ticket}/resolve/", {"outcome": "solved"}),
        ("post", "/api/v1/agent/tickets/{ticket}/release/", {}),
    ],
)
def test_a_suspended_agent_is_refused_everywhere_with_403(two_agents, method, path, body):
    # given: agent B, holding an offer and a ticket, is suspended; its token was issued before
    _, agent_b, offer, ticket = two_agents
    client = token_client(agent_b)
    Agent.objects.filter(pk=agent_b.pk).update(account_state=Agent.AccountState.SUSPENDED)
    before = ticket_state(ticket)

    # when
    response = getattr(client, method)(
        path.format(offer=offer.pk, ticket=ticket.pk), body, format="json"
    )

    # then
    assert response.status_code == 403
    assert response.json() == NOT_AN_ACTIVE_AGENT
    assert Offer.objects.get(pk=offer.pk).status == Offer.Status.PENDING
    assert ticket_state(ticket) == before


@pytest.mark.asyncio
async def test_a_suspended_agents_websocket_is_closed_with_4403():
    # given
    @database_sync_to_async
    def suspended_token() -> str:
        agent = AgentFactory(account_state=Agent.AccountState.SUSPENDED)
        return token_for(agent)

    socket = WebsocketCommunicator(
        application,
        "/ws/agent/",
        headers=[(b"authorization", f"Token {await suspended_token()}".encode())],
    )

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)

    # then
    assert accepted is True
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": 4403,
    }
    await socket.disconnect()


# --- coordinators' pages and the board socket ---------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "an agent", "a user who is not staff"])
@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/tickets/ticket/", "/admin/tickets/botintegration/add/"]
)
def test_the_admin_is_for_staff_only(who, path):
    # given
    client = Client()
    if who == "an agent":
        client.force_login(AgentFactory().user)
    elif who == "a user who is not staff":
        client.force_login(UserFactory())

    # when
    response = client.get(path)

    # then: sent to log in as staff
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"


def test_staff_may_use_the_admin():
    # given
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    # then
    assert client.get("/admin/tickets/ticket/").status_code == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(("who", "code"), [("anonymous", 4401), ("an agent", 4403)])
async def test_the_board_socket_is_for_staff_only(who, code):
    # given
    headers = []
    if who == "an agent":
        token = await database_sync_to_async(lambda: token_for(AgentFactory()))()
        headers = [(b"authorization", f"Token {token}".encode())]
    socket = WebsocketCommunicator(application, "/ws/board/", headers=headers)

    # when
    accepted, _ = await socket.connect(timeout=TIMEOUT)

    # then
    assert accepted is True
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": code,
    }
    await socket.disconnect()


# --- the portal's forms and the cookies ----------------------------------------------------------


@pytest.fixture
def window(agent) -> AgentAvailability:
    return AgentAvailability.objects.create(
        agent=agent, weekday=0, start_time="09:00", end_time="17:00"
    )


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/profile/", {"display_name": "Mallory"}),
        ("/availability/", {"weekdays": ["1"], "start_time": "09:00", "end_time": "12:00"}),
        ("/availability/{window}/remove/", {}),
        ("/accounts/logout/", {}),
        ("/accounts/password_change/", {"old_password": "pass-word-1"}),
    ],
)
def test_a_portal_form_posted_without_the_csrf_token_is_403(agent, window, path, data):
    # given: an agent's logged-in browser, and a page elsewhere posting to the portal
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent.user)
    display_name = agent.display_name

    # when
    response = client.post(path.format(window=window.pk), data)

    # then
    assert response.status_code == 403
    assert Agent.objects.get(pk=agent.pk).display_name == display_name
    assert list(AgentAvailability.objects.values_list("pk", flat=True)) == [window.pk]
    assert client.get("/profile/").status_code == 200  # still logged in


def test_the_log_in_form_posted_without_the_csrf_token_is_403(agent):
    # when
    response = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": agent.user.username, "password": "pass-word-1"}
    )

    # then
    assert response.status_code == 403
    assert "sessionid" not in response.cookies


def test_production_cookies_are_secure_and_http_only():
    # when
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_SECURE, s.CSRF_COOKIE_HTTPONLY, "
        "s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE)",
        **PRODUCTION_ENV,
    )

    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True True True True Lax Lax\n"
