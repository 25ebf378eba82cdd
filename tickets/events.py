"""The ticket payloads sent to bots (REST and webhooks) and agents, built in one place."""

from agents.models import Skill

from .models import Message, Ticket, TicketEvent
from .selectors import ticket_estimated_wait_seconds, ticket_queue_position


def isoformat(value) -> str | None:
    return value.isoformat() if value is not None else None


def message_view(message: Message) -> dict:
    return {
        "id": str(message.id),
        "role": message.role,
        "text": message.text,
        "sent_at": isoformat(message.sent_at),
    }


def ticket_view(ticket: Ticket, *, skills: list[Skill] | None = None) -> dict:
    """The ticket as a bot sees it (GET /api/v1/tickets/{id}/); `skills` are its skills, when
    the caller holds them already (they are read otherwise)."""
    # Read once: the payload lists them and the wait estimate matches on them.
    if skills is None:
        skills = list(ticket.skills.all())
    position = ticket_queue_position(ticket=ticket)
    return {
        "id": str(ticket.id),
        "external_id": ticket.external_id,
        "status": ticket.status,
        "priority": ticket.get_priority_display(),
        "language": ticket.language,
        "skills": sorted(skill.slug for skill in skills),
        "queue_position": position,
        "estimated_wait_seconds": ticket_estimated_wait_seconds(
            ticket=ticket, skills=skills, position=position
        ),
        "agent": {"display_name": ticket.agent.display_name} if ticket.agent_id else None,
        "sla_breached": ticket.sla_breached,
        "created_at": isoformat(ticket.created_at),
        "assigned_at": isoformat(ticket.assigned_at),
        "resolved_at": isoformat(ticket.resolved_at),
        "resolution": (
            {"outcome": ticket.outcome, "note": ticket.resolution_note} if ticket.outcome else None
        ),
    }


def ticket_for_agent(ticket: Ticket) -> dict:
    """The ticket as its agent sees it: the bot's view plus the context and the conversation."""
    return {
        **ticket_view(ticket),
        "summary": ticket.summary,
        "reason": ticket.reason,
        "customer": {"name": ticket.customer_name, "tier": ticket.customer_tier},
        "messages": [message_view(message) for message in ticket.messages.all()],
    }


def ticket_message_frame(message: Message) -> dict:
    return {
        "type": "ticket.message",
        "ticket_id": str(message.ticket_id),
        "message": message_view(message),
    }


def ticket_cancelled_frame(ticket: Ticket) -> dict:
    return {"type": "ticket.cancelled", "ticket_id": str(ticket.id)}


def ticket_requeued_frame(ticket: Ticket, *, reason: str) -> dict:
    return {"type": "ticket.requeued", "ticket_id": str(ticket.id), "reason": reason}


def ticket_event_board_frame(event: TicketEvent) -> dict:
    """The coordinators' board frame for one audit event of a ticket: small, so that every
    transition can be sent; the board reads anything more from the database."""
    ticket = event.ticket
    agent = event.agent
    return {
        "type": "ticket.event",
        "ticket_id": str(ticket.id),
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "language": ticket.language,
        "priority": ticket.get_priority_display(),
        "agent": {"id": str(agent.pk), "display_name": agent.display_name} if agent else None,
        "occurred_at": isoformat(event.occurred_at),
    }
