"""The routing engine's frames for agents' browsers, built in one place."""

from django.utils import timezone

from agents.events import agent_profile
from agents.models import Agent
from tickets.events import isoformat, message_view, ticket_for_agent
from tickets.models import Ticket

from .models import Offer


def offer_view(offer: Offer) -> dict:
    ticket = offer.ticket
    return {
        "id": str(offer.id),
        "expires_at": isoformat(offer.expires_at),
        "ticket": {
            "id": str(ticket.id),
            "language": ticket.language,
            "skills": sorted(skill.slug for skill in ticket.skills.all()),
            "priority": ticket.get_priority_display(),
            "reason": ticket.reason,
            "summary": ticket.summary,
            "customer": {"name": ticket.customer_name, "tier": ticket.customer_tier},
            "transcript": [message_view(message) for message in ticket.messages.all()],
            "waiting_seconds": int((timezone.now() - ticket.created_at).total_seconds()),
        },
    }


def offer_created_frame(offer: Offer) -> dict:
    return {"type": "offer.created", "offer": offer_view(offer)}


def offer_revoked_frame(offer: Offer, reason: str) -> dict:
    return {"type": "offer.revoked", "offer_id": str(offer.id), "reason": reason}


def ticket_assigned_frame(ticket: Ticket) -> dict:
    return {"type": "ticket.assigned", "ticket": ticket_for_agent(ticket)}


def hello_frame(agent: Agent, offers: list[Offer], tickets: list[Ticket]) -> dict:
    return {
        "type": "hello",
        "agent": agent_profile(agent),
        "offers": [offer_view(offer) for offer in offers],
        "tickets": [ticket_for_agent(ticket) for ticket in tickets],
    }
