"""The routing engine's frames for agents' browsers, built in one place."""

from django.utils import timezone

from agents.events import agent_profile
from agents.models import Agent
from tickets.events import isoformat, message_view, ticket_for_agent
from tickets.models import Message, Ticket

from .candidates import offered_ticket_read
from .models import Offer


def offer_view(
    offer: Offer, *, skill_slugs: list[str] | None = None, transcript: list[Message] | None = None
) -> dict:
    """The offer as its agent sees it; `skill_slugs` and `transcript` are its ticket's, when the
    caller holds them already (they are read through the ticket otherwise)."""
    ticket = offer.ticket
    if skill_slugs is None:
        skill_slugs = [skill.slug for skill in ticket.skills.all()]
    if transcript is None:
        transcript = ticket.messages.all()
    return {
        "id": str(offer.id),
        "expires_at": isoformat(offer.expires_at),
        "ticket": {
            "id": str(ticket.id),
            "language": ticket.language,
            "skills": sorted(skill_slugs),
            "priority": ticket.get_priority_display(),
            "reason": ticket.reason,
            "summary": ticket.summary,
            "customer": {"name": ticket.customer_name, "tier": ticket.customer_tier},
            "transcript": [message_view(message) for message in transcript],
            "waiting_seconds": int((timezone.now() - ticket.created_at).total_seconds()),
        },
    }


def offer_created_frame(offer: Offer) -> dict:
    """Built for every offer made, so its ticket's skills and conversation are read by hand."""
    skill_slugs, transcript = offered_ticket_read(ticket_id=offer.ticket_id)
    return {
        "type": "offer.created",
        "offer": offer_view(offer, skill_slugs=skill_slugs, transcript=transcript),
    }


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
