"""The agent REST API (contract sections 3 and 4), over real commits so routing follows."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.test import APIClient

from agents.models import Agent
from dispatch.models import Offer
from dispatch.services import offer_accept, ticket_route
from tests.factories import UserFactory
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

NOT_FOUND = {"detail": "Not found."}
NOT_AN_ACTIVE_AGENT = {"detail": "Only active agents may use this endpoint."}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def offer_to(ticket: Ticket) -> Offer:
    """Route a ticket written without a routing task; its only eligible agent gets it."""
    offer = ticket_route(ticket_id=ticket.pk)
    assert offer is not None
    return offer


def assigned_ticket(ticket_factory, agent: Agent, **kwargs) -> Ticket:
    ticket = ticket_factory(**kwargs)
    offer_accept(offer_id=offer_to(ticket).pk, agent=agent)
    ticket.refresh_from_db()
    return ticket


# -- authentication ---------------------------------------------------------------------------


def test_a_token_is_issued_for_the_right_password_and_authenticates(agent):
    # given
    client = APIClient()

    # when
    response = client.post(
        "/api/v1/auth/token/",
        {"username": agent.user.username, "password": "pass-word-1"},
        format="json",
    )

    # then
    assert response.status_code == 200
    token = response.json()["token"]
    assert response.json() == {"token": token}
    # Only a digest is stored: the answer was the one time the token could be read.
    assert AuthToken.objects.get(user=agent.user).digest == hash_token(token)
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/v1/agent/me/").status_code == 200


def test_a_wrong_password_gets_no_token(agent):
    # when
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"username": agent.user.username, "password": "wrong"},
        format="json",
    )

    # then
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert not AuthToken.objects.exists()


def test_without_credentials_the_agent_api_answers_401():
    # when
    response = APIClient().get("/api/v1/agent/me/")

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == "Token"


def test_an_unknown_token_is_401():
    # given
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    # when
    response = client.get("/api/v1/agent/me/")

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/agent/me/"),
        ("post", "/api/v1/agent/status/"),
        ("get", "/api/v1/agent/offers/"),
        ("get", "/api/v1/agent/tickets/"),
    ],
)
def test_a_suspended_agent_is_refused_with_403(agent_factory, method, path):
    # given
    suspended = agent_factory(account_state=Agent.AccountState.SUSPENDED)

    # when
    response = getattr(client_for(suspended.user), method)(path)

    # then
    assert response.status_code == 403
    assert response.json() == NOT_AN_ACTIVE_AGENT


def test_a_user_who_is_not_an_agent_is_refused_with_403():
    # given: a user with a token but no agent profile
    user = UserFactory()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")

    # when
    response = client.get("/api/v1/agent/me/")

    # then
    assert response.status_code == 403
    assert response.json() == NOT_AN_ACTIVE_AGENT


# -- profile and status -----------------------------------------------------------------------


def test_me_is_the_agents_profile(agent_factory, ticket_factory):
    # given: an agent with one assigned ticket and one pending offer
    agent = agent_factory(
        online=True,
        display_name="Maja",
        capacity=3,
        languages=["sv", "en"],
        skills={"refunds": 5, "billing": 2},
    )
    assigned_ticket(ticket_factory, agent)
    offer_to(ticket_factory())

    # when
    response = client_for(agent.user).get("/api/v1/agent/me/")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "username": agent.user.username,
        "display_name": "Maja",
        "status": "available",
        "languages": ["en", "sv"],
        "skills": ["billing", "refunds"],
        "capacity": 3,
        "active_tickets": 1,
    }


def test_setting_the_status_answers_with_the_profile(agent, agent_client):
    # when
    response = agent_client.post("/api/v1/agent/status/", {"status": "away"}, format="json")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "username": agent.user.username,
        "display_name": agent.display_name,
        "status": "away",
        "languages": ["en"],
        "skills": [],
        "capacity": 2,
        "active_tickets": 0,
    }
    agent.refresh_from_db()
    assert agent.status == Agent.Status.AWAY


def test_becoming_available_over_the_api_is_offered_waiting_work(
    agent, agent_client, ticket_factory
):
    # given
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.AWAY)
    ticket = ticket_factory()

    # when
    response = agent_client.post("/api/v1/agent/status/", {"status": "available"}, format="json")

    # then
    assert response.status_code == 200
    assert response.json()["status"] == "available"
    assert list(Offer.objects.values_list("ticket", "agent", "status")) == [
        (ticket.pk, agent.pk, Offer.Status.PENDING)
    ]


def test_an_unknown_status_is_400(agent_client):
    # when
    response = agent_client.post("/api/v1/agent/status/", {"status": "busy"}, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == {"status": ['"busy" is not a valid choice.']}


# -- offers -----------------------------------------------------------------------------------


def test_offers_lists_the_agents_pending_offers(agent_factory, agent_client, agent, ticket_factory):
    # given: one offer for this agent (a ticket waiting 90 s), one for a Swedish speaker
    ticket = ticket_factory(skills=[], summary="Double charge", customer_tier="gold")
    Message.objects.create(
        ticket=ticket, position=1, role="customer", text="Charged twice", sent_at=timezone.now()
    )
    Ticket.objects.filter(pk=ticket.pk).update(
        created_at=timezone.now() - timedelta(seconds=90), message_count=1
    )
    offer = offer_to(ticket)
    agent_factory(online=True, languages=["sv"])
    offer_to(ticket_factory(language="sv"))
    message = ticket.messages.get()

    # when
    response = agent_client.get("/api/v1/agent/offers/")

    # then
    assert response.status_code == 200
    assert response.json() == [
        {
            "id": str(offer.pk),
            "expires_at": offer.expires_at.isoformat(),
            "ticket": {
                "id": str(ticket.pk),
                "language": "en",
                "skills": [],
                "priority": "normal",
                "reason": "customer_requested",
                "summary": "Double charge",
                "customer": {"name": "Anna", "tier": "gold"},
                "transcript": [
                    {
                        "id": str(message.pk),
                        "role": "customer",
                        "text": "Charged twice",
                        "sent_at": message.sent_at.isoformat(),
                    }
                ],
                "waiting_seconds": 90,
            },
        }
    ]


def test_accepting_an_offer_answers_with_the_assigned_ticket(agent, agent_client, ticket_factory):
    # given
    ticket = ticket_factory()
    offer = offer_to(ticket)

    # when
    response = agent_client.post(f"/api/v1/offers/{offer.pk}/accept/")

    # then
    assert response.status_code == 200
    body = response.json()
    ticket.refresh_from_db()
    assert body == {
        "id": str(ticket.pk),
        "external_id": ticket.external_id,
        "status": "assigned",
        "priority": "normal",
        "language": "en",
        "skills": [],
        "queue_position": None,
        "estimated_wait_seconds": None,
        "agent": {"display_name": agent.display_name},
        "sla_breached": False,
        "created_at": ticket.created_at.isoformat(),
        "assigned_at": ticket.assigned_at.isoformat(),
        "resolved_at": None,
        "resolution": None,
        "summary": "",
        "reason": "customer_requested",
        "customer": {"name": "Anna", "tier": ""},
        "messages": [],
    }
    assert (ticket.status, ticket.agent) == (Ticket.Status.ASSIGNED, agent)


def test_accepting_an_offer_twice_is_a_conflict(agent_client, ticket_factory):
    # given
    offer = offer_to(ticket_factory())
    agent_client.post(f"/api/v1/offers/{offer.pk}/accept/")

    # when
    response = agent_client.post(f"/api/v1/offers/{offer.pk}/accept/")

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": "The offer is no longer pending (it is accepted)."}


def test_accepting_an_overdue_offer_is_a_conflict(agent_client, ticket_factory):
    # given
    offer = offer_to(ticket_factory())
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # when
    response = agent_client.post(f"/api/v1/offers/{offer.pk}/accept/")

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": "The offer is no longer pending (it is expired)."}


def test_declining_an_offer_passes_the_ticket_on(
    agent, agent_client, agent_factory, ticket_factory
):
    # given: the longest idle agent has the offer; another agent could take it
    ticket = ticket_factory()
    offer = offer_to(ticket)
    other = agent_factory(online=True)

    # when
    response = agent_client.post(
        f"/api/v1/offers/{offer.pk}/decline/", {"reason": "Not my area"}, format="json"
    )

    # then
    assert response.status_code == 200
    assert response.json() == {"id": str(offer.pk), "status": "declined"}
    assert list(ticket.offers.order_by("created_at").values_list("agent", "status")) == [
        (agent.pk, Offer.Status.DECLINED),
        (other.pk, Offer.Status.PENDING),
    ]
    assert ticket.offers.get(agent=agent).decline_reason == "Not my area"


def test_declining_twice_is_a_conflict(agent_client, ticket_factory):
    # given
    offer = offer_to(ticket_factory())
    agent_client.post(f"/api/v1/offers/{offer.pk}/decline/", {}, format="json")

    # when
    response = agent_client.post(f"/api/v1/offers/{offer.pk}/decline/", {}, format="json")

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": "The offer is no longer pending (it is declined)."}


@pytest.mark.parametrize("action", ["accept", "decline"])
def test_another_agents_offer_is_404(agent_client, agent_factory, ticket_factory, action):
    # given: an offer to a Swedish speaker
    other = agent_factory(online=True, languages=["sv"])
    offer = offer_to(ticket_factory(language="sv"))
    assert offer.agent == other

    # when
    response = agent_client.post(f"/api/v1/offers/{offer.pk}/{action}/", {}, format="json")

    # then
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    offer.refresh_from_db()
    assert offer.status == Offer.Status.PENDING


@pytest.mark.parametrize("offer_id", ["7b0c0e6e-0000-4000-8000-000000000000", "not-a-uuid"])
def test_an_unknown_offer_is_404(agent_client, offer_id):
    # when
    response = agent_client.post(f"/api/v1/offers/{offer_id}/accept/")

    # then
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# -- the agent's tickets ----------------------------------------------------------------------


def test_tickets_lists_the_agents_assigned_tickets(agent, agent_client, ticket_factory):
    # given: one assigned ticket and one only offered
    ticket = assigned_ticket(ticket_factory, agent)
    offer_to(ticket_factory())

    # when
    response = agent_client.get("/api/v1/agent/tickets/")

    # then
    assert response.status_code == 200
    assert [(t["id"], t["status"]) for t in response.json()] == [(str(ticket.pk), "assigned")]


def test_an_agent_message_is_added_to_its_ticket(agent, agent_client, ticket_factory):
    # given
    ticket = assigned_ticket(ticket_factory, agent)

    # when
    response = agent_client.post(
        f"/api/v1/agent/tickets/{ticket.pk}/messages/", {"text": "Hi, I'm Maja."}, format="json"
    )

    # then
    assert response.status_code == 201
    message = ticket.messages.get()
    assert response.json() == {
        "id": str(message.pk),
        "role": "agent",
        "text": "Hi, I'm Maja.",
        "sent_at": message.sent_at.isoformat(),
    }
    assert (message.position, message.agent) == (1, agent)


def test_an_empty_agent_message_is_400(agent, agent_client, ticket_factory):
    # given
    ticket = assigned_ticket(ticket_factory, agent)

    # when
    response = agent_client.post(
        f"/api/v1/agent/tickets/{ticket.pk}/messages/", {"text": ""}, format="json"
    )

    # then
    assert response.status_code == 400
    assert response.json() == {"text": ["This field may not be blank."]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("messages", {"text": "Hello"}),
        ("resolve", {"outcome": "solved"}),
        ("release", {}),
    ],
)
def test_another_agents_ticket_is_404(agent_client, agent_factory, ticket_factory, path, body):
    # given: a ticket assigned to a Swedish speaker
    other = agent_factory(online=True, languages=["sv"])
    ticket = assigned_ticket(ticket_factory, other, language="sv")

    # when
    response = agent_client.post(f"/api/v1/agent/tickets/{ticket.pk}/{path}/", body, format="json")

    # then
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent, ticket.message_count) == (
        Ticket.Status.ASSIGNED,
        other,
        0,
    )


def test_resolving_answers_with_the_resolved_ticket(agent, agent_client, ticket_factory):
    # given
    ticket = assigned_ticket(ticket_factory, agent)

    # when
    response = agent_client.post(
        f"/api/v1/agent/tickets/{ticket.pk}/resolve/",
        {"outcome": "handback", "note": "Back to the bot"},
        format="json",
    )

    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["resolution"]) == (
        "resolved",
        {"outcome": "handback", "note": "Back to the bot"},
    )
    ticket.refresh_from_db()
    assert (ticket.status, ticket.outcome, ticket.resolution_note) == (
        Ticket.Status.RESOLVED,
        Ticket.Outcome.HANDBACK,
        "Back to the bot",
    )
    assert body["resolved_at"] == ticket.resolved_at.isoformat()


def test_resolving_reads_the_agent_only_to_authenticate(agent, agent_client, ticket_factory):
    # given
    ticket = assigned_ticket(ticket_factory, agent)

    # when
    with CaptureQueriesContext(connection) as captured:
        response = agent_client.post(
            f"/api/v1/agent/tickets/{ticket.pk}/resolve/", {"outcome": "solved"}, format="json"
        )

    # then: the ticket's holder is the agent who asked, so the answer's agent is not read again
    assert response.status_code == 200
    assert response.json()["agent"] == {"display_name": agent.display_name}
    agent_reads = [
        query["sql"]
        for query in captured
        if query["sql"].startswith("SELECT") and 'FROM "agents_agent"' in query["sql"]
    ]
    assert len(agent_reads) == 1


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"outcome": "fixed"}, {"outcome": ['"fixed" is not a valid choice.']}),
        ({}, {"outcome": ["This field is required."]}),
        (
            {"outcome": "solved", "note": "x" * 4001},
            {"note": ["Ensure this field has no more than 4000 characters."]},
        ),
    ],
)
def test_resolving_validates_the_outcome(agent, agent_client, ticket_factory, body, errors):
    # given
    ticket = assigned_ticket(ticket_factory, agent)

    # when
    response = agent_client.post(f"/api/v1/agent/tickets/{ticket.pk}/resolve/", body, format="json")

    # then
    assert response.status_code == 400
    assert response.json() == errors
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.ASSIGNED


def test_resolving_a_resolved_ticket_is_a_conflict(agent, agent_client, ticket_factory):
    # given
    ticket = assigned_ticket(ticket_factory, agent)
    path = f"/api/v1/agent/tickets/{ticket.pk}/resolve/"
    agent_client.post(path, {"outcome": "solved"}, format="json")

    # when
    response = agent_client.post(path, {"outcome": "solved"}, format="json")

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": "The ticket is resolved."}


def test_releasing_requeues_the_ticket_for_someone_else(
    agent, agent_client, agent_factory, ticket_factory
):
    # given
    ticket = assigned_ticket(ticket_factory, agent)
    other = agent_factory(online=True)

    # when
    response = agent_client.post(
        f"/api/v1/agent/tickets/{ticket.pk}/release/", {"reason": "Too hard"}, format="json"
    )

    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["agent"]) == (str(ticket.pk), "queued", None)
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent) == (Ticket.Status.OFFERED, None)
    assert list(ticket.offers.order_by("created_at").values_list("agent", "status")) == [
        (agent.pk, Offer.Status.ACCEPTED),
        (other.pk, Offer.Status.PENDING),
    ]
    assert ticket.events.get(kind="released").detail == {"reason": "Too hard"}
