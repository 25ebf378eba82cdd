import uuid

from dispatch.rows import RowByKey

from .models import Ticket

# FOR NO KEY UPDATE: a ticket's key never changes, and rows that merely reference a locked
# ticket (messages, events, offers) can then still be inserted by others.
_LOCKED = RowByKey(lambda: Ticket.objects.select_for_update(no_key=True))
_LOCKED_UNLESS_HELD = RowByKey(
    lambda: Ticket.objects.select_for_update(skip_locked=True, no_key=True)
)


def lock_ticket(ticket_id: uuid.UUID, *, skip_locked: bool = False) -> Ticket | None:
    """The ticket, locked for the rest of the transaction; None when there is none (or, with
    skip_locked, when another transaction holds it)."""
    return (_LOCKED_UNLESS_HELD if skip_locked else _LOCKED).get(ticket_id)
