from django.contrib.auth.models import AbstractBaseUser

from agents.models import Agent
from agents.push import push_to_board_on_commit

from .events import ticket_event_board_frame
from .models import Ticket, TicketEvent


def ticket_transition(
    *,
    ticket: Ticket,
    to_status: str,
    kind: str,
    agent: Agent | None = None,
    actor: AbstractBaseUser | None = None,
    detail: dict | None = None,
    update_fields: tuple[str, ...] = (),
) -> TicketEvent:
    """Move a locked ticket to a new status and write its audit event in the same transaction."""
    from_status = ticket.status
    ticket.status = to_status
    ticket.save(update_fields=["status", *update_fields])
    return ticket_record_event(
        ticket=ticket,
        kind=kind,
        from_status=from_status,
        agent=agent,
        actor=actor,
        detail=detail,
    )


def ticket_record_event(
    *,
    ticket: Ticket,
    kind: str,
    from_status: str | None = None,
    agent: Agent | None = None,
    actor: AbstractBaseUser | None = None,
    detail: dict | None = None,
) -> TicketEvent:
    """Write one audit event for something that happened to a ticket; the coordinators' live
    board hears of it once the transaction commits."""
    event = TicketEvent.objects.create(
        ticket=ticket,
        kind=kind,
        from_status=from_status if from_status is not None else ticket.status,
        to_status=ticket.status,
        agent=agent,
        actor=actor if actor is not None and actor.is_authenticated else None,
        detail=detail or {},
    )
    push_to_board_on_commit(ticket_event_board_frame(event))
    return event
