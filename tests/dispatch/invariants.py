"""The invariants of ARCHITECTURE.md as checks on the database, for the race tests."""

from collections import Counter
from itertools import groupby

from django.db.models import Q

from dispatch.models import Offer
from dispatch.selectors import agents_with_load
from tickets.models import Ticket, TicketEvent

HOLDING = Q(status=Offer.Status.PENDING) | Q(status=Offer.Status.ACCEPTED, released_at=None)


def assert_invariants() -> None:
    """Invariants 1 and 2, and the part of 3 that a snapshot can show: every ticket is in one
    state that its offers agree with, reached through an unbroken audit trail."""
    holding = list(Offer.objects.filter(HOLDING).values_list("ticket", "status", "agent"))
    # Invariant 1: never two pending-or-accepted-unreleased offers for one ticket.
    holders = Counter(ticket for ticket, _, _ in holding)
    assert [ticket for ticket, count in holders.items() if count > 1] == []
    # Invariant 2: no agent holds more than its capacity (assigned + pending).
    over = {
        agent.display_name: (agent.load, agent.capacity)
        for agent in agents_with_load()
        if agent.load > agent.capacity
    }
    assert over == {}
    # Invariant 3: each ticket's status agrees with the offer that holds it.
    held = {ticket: (status, agent) for ticket, status, agent in holding}
    disagreements = []
    for ticket_id, status, agent_id in Ticket.objects.values_list("pk", "status", "agent"):
        holder = held.get(ticket_id)
        agrees = {
            Ticket.Status.QUEUED: holder is None and agent_id is None,
            Ticket.Status.OFFERED: holder is not None
            and holder[0] == Offer.Status.PENDING
            and agent_id is None,
            Ticket.Status.ASSIGNED: holder == (Offer.Status.ACCEPTED, agent_id),
            Ticket.Status.RESOLVED: holder == (Offer.Status.ACCEPTED, agent_id),
            Ticket.Status.CANCELLED: holder is None or holder[0] == Offer.Status.ACCEPTED,
        }[status]
        if not agrees:
            disagreements.append((ticket_id, status, agent_id, holder))
    assert disagreements == []
    assert_audit_trails_are_unbroken()


def assert_audit_trails_are_unbroken() -> None:
    """Each transition starts where the one before it ended, and the last ends where the
    ticket is now: nothing changed a ticket's state without its event."""
    status_now = dict(Ticket.objects.values_list("pk", "status"))
    breaks = []
    events = TicketEvent.objects.order_by("ticket", "occurred_at", "id").values_list(
        "ticket", "from_status", "to_status"
    )
    for ticket_id, trail in groupby(events, key=lambda event: event[0]):
        state = None
        for _, from_status, to_status in trail:
            if state is not None and from_status != state:
                breaks.append((ticket_id, state, from_status))
            state = to_status
        if state != status_now[ticket_id]:
            breaks.append((ticket_id, state, status_now[ticket_id]))
    assert breaks == []
