"""The core loop end to end, through the real platform: an ASGI server, a Celery worker and
beat as processes on the test database and Redis. The bot speaks HTTP, the agent a websocket
and REST, and the bot's webhook endpoint is a real HTTP server (`bot_receiver`)."""

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import httpx
import pytest
from django.utils import timezone
from websockets.sync.client import connect

from agents.models import Agent
from dispatch.models import DispatchPolicy, Offer
from tests.live import wait_for
from tickets.models import Message, Ticket

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

FRAME_TIMEOUT_SECONDS = 15.0
SIGNING_SECRET = "e2e-signing-secret"

ESCALATION = {
    "external_id": "conv-8812",
    "language": "sv",
    "skills": ["refunds", "billing"],
    "priority": "high",
    "reason": "low_confidence",
    "summary": "Customer disputes a double charge on order 5531 and asked for a person.",
    "customer": {"id": "cust-77", "name": "Anna", "tier": "gold"},
    "transcript": [
        {"role": "customer", "text": "I was charged twice", "sent_at": "2026-11-25T10:00:00Z"},
        {"role": "bot", "text": "I can help with that...", "sent_at": "2026-11-25T10:00:02Z"},
        {"role": "customer", "text": "A person, please.", "sent_at": "2026-11-25T10:00:09Z"},
    ],
}
TRANSCRIPT_VIEW = [
    ("customer", "I was charged twice", "2026-11-25T10:00:00+00:00"),
    ("bot", "I can help with that...", "2026-11-25T10:00:02+00:00"),
    ("customer", "A person, please.", "2026-11-25T10:00:09+00:00"),
]


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def agent_token(platform, agent: Agent) -> str:
    response = httpx.post(
        f"{platform.url}/api/v1/auth/token/",
        json={"username": agent.user.username, "password": "pass-word-1"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


def http_client(platform, authorization: str) -> httpx.Client:
    return httpx.Client(base_url=platform.url, headers={"Authorization": authorization}, timeout=10)


def agent_socket(platform, token: str):
    return connect(
        f"{platform.ws_url}/ws/agent/",
        additional_headers={"Authorization": f"Token {token}"},
        open_timeout=10,
    )


def next_frame(socket) -> dict:
    return json.loads(socket.recv(timeout=FRAME_TIMEOUT_SECONDS))


def go_available(socket) -> None:
    """Read the `hello` of a fresh connection and set the agent available over the socket."""
    assert next_frame(socket)["type"] == "hello"
    socket.send(json.dumps({"type": "status.set", "status": "available"}))
    assert next_frame(socket) == {"type": "status", "status": "available"}


def transcript_view(ticket_id: str) -> list[dict]:
    messages = Message.objects.filter(ticket_id=ticket_id).order_by("position")
    return [
        {"id": str(message.id), "role": role, "text": text, "sent_at": sent_at}
        for message, (role, text, sent_at) in zip(messages, TRANSCRIPT_VIEW, strict=True)
    ]


def expected_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SIGNING_SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_escalation_is_offered_accepted_answered_and_resolved(
    live_platform, bot_factory, live_agent_factory, bot_receiver
):
    # given an agent connected over the websocket and available, and a bot with a webhook
    maja = live_agent_factory(display_name="Maja", languages=["sv"], skills=["refunds", "billing"])
    bot = bot_factory(signing_secret=SIGNING_SECRET)
    token = agent_token(live_platform, maja)
    with (
        http_client(live_platform, f"Bearer {bot.api_key}") as bot_http,
        http_client(live_platform, f"Token {token}") as agent_http,
        agent_socket(live_platform, token) as socket,
    ):
        hello = next_frame(socket)
        assert hello == {
            "type": "hello",
            "agent": {
                "username": maja.user.username,
                "display_name": "Maja",
                "status": "offline",
                "languages": ["sv"],
                "skills": ["billing", "refunds"],
                "capacity": 2,
                "active_tickets": 0,
            },
            "offers": [],
            "tickets": [],
        }
        socket.send(json.dumps({"type": "status.set", "status": "available"}))
        assert next_frame(socket) == {"type": "status", "status": "available"}

        # when the bot escalates a conversation
        escalated = bot_http.post(
            "/api/v1/escalations/", json={**ESCALATION, "callback_url": bot_receiver.url}
        )

        # then the agent is offered it, with everything needed to decide
        assert escalated.status_code == 201, escalated.text
        ticket_id = escalated.json()["id"]
        offered = next_frame(socket)
        ticket = Ticket.objects.get(pk=ticket_id)
        offer = Offer.objects.get(ticket_id=ticket_id)
        waiting_seconds = offered["offer"]["ticket"].pop("waiting_seconds")
        # Measured when the frame was built, a moment after the offer row was written.
        offer_after = int((offer.created_at - ticket.created_at).total_seconds())
        assert waiting_seconds in {offer_after, offer_after + 1}
        assert offered == {
            "type": "offer.created",
            "offer": {
                "id": str(offer.id),
                "expires_at": iso(offer.expires_at),
                "ticket": {
                    "id": ticket_id,
                    "language": "sv",
                    "skills": ["billing", "refunds"],
                    "priority": "high",
                    "reason": "low_confidence",
                    "summary": ESCALATION["summary"],
                    "customer": {"name": "Anna", "tier": "gold"},
                    "transcript": transcript_view(ticket_id),
                },
            },
        }

        # when the agent accepts over the socket
        socket.send(json.dumps({"type": "offer.accept", "offer_id": str(offer.id)}))

        # then the ticket is theirs, with the whole conversation
        assigned = next_frame(socket)
        ticket.refresh_from_db()
        assert assigned == {
            "type": "ticket.assigned",
            "ticket": {
                "id": ticket_id,
                "external_id": "conv-8812",
                "status": "assigned",
                "priority": "high",
                "language": "sv",
                "skills": ["billing", "refunds"],
                "queue_position": None,
                "estimated_wait_seconds": None,
                "agent": {"display_name": "Maja"},
                "sla_breached": False,
                "created_at": iso(ticket.created_at),
                "assigned_at": iso(ticket.assigned_at),
                "resolved_at": None,
                "resolution": None,
                "summary": ESCALATION["summary"],
                "reason": "low_confidence",
                "customer": {"name": "Anna", "tier": "gold"},
                "messages": transcript_view(ticket_id),
            },
        }
        wait_for(lambda: bot_receiver.events() == ["ticket.assigned"], what="ticket.assigned")

        # when the bot relays a new customer message
        relayed = bot_http.post(
            f"/api/v1/tickets/{ticket_id}/messages/", json={"text": "Order 5531, the blue one."}
        )

        # then the agent sees it live
        assert relayed.status_code == 201, relayed.text
        assert relayed.json()["role"] == "customer"
        assert relayed.json()["text"] == "Order 5531, the blue one."
        assert next_frame(socket) == {
            "type": "ticket.message",
            "ticket_id": ticket_id,
            "message": relayed.json(),
        }

        # when the agent replies over REST
        reply = agent_http.post(
            f"/api/v1/agent/tickets/{ticket_id}/messages/",
            json={"text": "I have refunded the second charge."},
        )

        # then the bot's webhook receives the reply
        assert reply.status_code == 201, reply.text
        assert reply.json()["role"] == "agent"
        assert reply.json()["text"] == "I have refunded the second charge."
        wait_for(
            lambda: bot_receiver.events() == ["ticket.assigned", "ticket.message"],
            what="ticket.message",
        )

        # when the agent resolves the ticket over REST
        resolved = agent_http.post(
            f"/api/v1/agent/tickets/{ticket_id}/resolve/",
            json={"outcome": "solved", "note": "Refunded the duplicate charge."},
        )

        # then the bot's webhook hears of it, and the bot sees the resolved ticket
        assert resolved.status_code == 200, resolved.text
        wait_for(
            lambda: (
                bot_receiver.events() == ["ticket.assigned", "ticket.message", "ticket.resolved"]
            ),
            what="ticket.resolved",
        )
        final = bot_http.get(f"/api/v1/tickets/{ticket_id}/")
    assert final.status_code == 200
    assert final.json()["status"] == "resolved"
    assert final.json()["agent"] == {"display_name": "Maja"}
    assert final.json()["resolution"] == {
        "outcome": "solved",
        "note": "Refunded the duplicate charge.",
    }

    # and every webhook is signed, identified and numbered in order
    hooks = bot_receiver.received
    for sequence, (hook, event) in enumerate(
        zip(hooks, ["ticket.assigned", "ticket.message", "ticket.resolved"], strict=True),
        start=1,
    ):
        body = hook.json
        assert body["event"] == event
        assert body["sequence"] == sequence
        assert body["ticket"]["id"] == ticket_id
        assert hook.headers["x-dispatch-event"] == event
        assert hook.headers["x-dispatch-delivery"] == body["delivery_id"]
        assert hook.headers["x-dispatch-signature"] == expected_signature(hook.body)
    assert hooks[0].json["ticket"]["status"] == "assigned"
    assert hooks[0].json["ticket"]["agent"] == {"display_name": "Maja"}
    assert "message" not in hooks[0].json
    assert hooks[1].json["message"] == reply.json()
    assert hooks[2].json["ticket"]["status"] == "resolved"
    assert hooks[2].json["ticket"]["resolution"] == {
        "outcome": "solved",
        "note": "Refunded the duplicate charge.",
    }
    assert len({hook.json["delivery_id"] for hook in hooks}) == 3


def test_an_unanswered_offer_expires_and_goes_to_the_next_agent(
    live_platform, bot_factory, live_agent_factory
):
    # given the shortest offer time-out and two available agents, the first idle the longest
    policy = DispatchPolicy.load()
    policy.offer_timeout_seconds = 5
    policy.save()
    first = live_agent_factory(languages=["sv"])
    second = live_agent_factory(languages=["sv"])
    bot = bot_factory()
    with (
        agent_socket(live_platform, agent_token(live_platform, first)) as first_socket,
        agent_socket(live_platform, agent_token(live_platform, second)) as second_socket,
    ):
        go_available(first_socket)
        go_available(second_socket)
        now = timezone.now()
        Agent.objects.filter(pk=first.pk).update(idle_since=now - timedelta(hours=2))
        Agent.objects.filter(pk=second.pk).update(idle_since=now - timedelta(hours=1))

        # when the bot escalates and the first agent does not answer
        escalated = httpx.post(
            f"{live_platform.url}/api/v1/escalations/",
            json={"external_id": "conv-1", "language": "sv", "customer": {"id": "cust-1"}},
            headers={"Authorization": f"Bearer {bot.api_key}"},
            timeout=10,
        )
        assert escalated.status_code == 201, escalated.text
        ticket_id = escalated.json()["id"]
        first_offer = next_frame(first_socket)
        assert first_offer["type"] == "offer.created"
        assert first_offer["offer"]["ticket"]["id"] == ticket_id

        # then the offer expires for the first agent, not before its time, and goes to the second
        assert next_frame(first_socket) == {
            "type": "offer.revoked",
            "offer_id": first_offer["offer"]["id"],
            "reason": "expired",
        }
        assert timezone.now() >= datetime.fromisoformat(first_offer["offer"]["expires_at"])
        second_offer = next_frame(second_socket)
        assert second_offer["type"] == "offer.created"
        assert second_offer["offer"]["ticket"]["id"] == ticket_id
        offers = Offer.objects.filter(ticket_id=ticket_id).order_by("created_at")
        assert [(o.agent_id, o.status, o.revoke_reason) for o in offers] == [
            (first.pk, Offer.Status.EXPIRED, "expired"),
            (second.pk, Offer.Status.PENDING, ""),
        ]
