import uuid

from .models import Ticket


# FOR NO KEY UPDATE: a ticket's key never changes, and rows that merely reference a locked
# ticket (messages, events, offers) can then still be inserted by others.
def lock_ticket(ticket_id: uuid.UUID, *, skip_locked: bool = False) -> Ticket | None:
    """The ticket, locked for the rest of the transaction; None when there is none (or, with
    skip_locked, when another transaction holds it)."""
    return (
        Ticket.objects.select_for_update(skip_locked=skip_locked, no_key=True)
        .filter(pk=ticket_id)
        .first()
    )
