from datetime import datetime, timedelta

from django.db.models import Case, Count, DateTimeField, F, Q, QuerySet, When
from django.utils import timezone

# The queue order is the dispatcher's and its aging rate is a dispatch-policy setting: this
# reads that one row, no routing logic. dispatch.models imports only the tickets and agents
# models, so this makes no import cycle.
from dispatch.models import DispatchPolicy

from .models import Message, Ticket

# Recent throughput is measured over this window for the wait estimate.
THROUGHPUT_WINDOW = timedelta(hours=1)

WAITING_STATUSES = (Ticket.Status.QUEUED, Ticket.Status.OFFERED)


def _virtual_arrival(*, aging_seconds: int) -> Case:
    # One plain datetime subtraction per priority: SQLite and PostgreSQL both compute and order
    # it, where multiplying an interval by a column is not portable.
    return Case(
        *[
            When(
                priority=priority,
                then=F("created_at") - timedelta(seconds=priority * aging_seconds),
            )
            for priority in Ticket.Priority.values
        ],
        output_field=DateTimeField(),
    )


def ticket_virtual_arrival(*, ticket: Ticket, aging_seconds: int) -> datetime:
    """When the ticket counts as having arrived in the queue order: priority × aging_seconds
    before it was created."""
    return ticket.created_at - timedelta(seconds=ticket.priority * aging_seconds)


def tickets_in_dispatch_order(tickets: QuerySet[Ticket], *, aging_seconds: int) -> QuerySet[Ticket]:
    """The tickets in the order the dispatcher serves them.

    Earliest virtual arrival first (see ticket_virtual_arrival), then the oldest, then by id.
    Each priority level is worth aging_seconds of waiting: urgent goes first, yet a low ticket
    that has waited long enough is served before a fresh normal one, so nothing starves.
    """
    return tickets.alias(virtual_arrival=_virtual_arrival(aging_seconds=aging_seconds)).order_by(
        "virtual_arrival", "created_at", "id"
    )


def tickets_waiting(*, language: str) -> QuerySet[Ticket]:
    """The tickets of one language that still wait for an agent, in dispatch order."""
    return tickets_in_dispatch_order(
        Ticket.objects.filter(language=language, status__in=WAITING_STATUSES),
        aging_seconds=DispatchPolicy.load().aging_seconds_per_priority,
    )


def ticket_queue_position(*, ticket: Ticket) -> int | None:
    """1-based place among the waiting tickets of the same language, in dispatch order; None
    once not waiting."""
    if ticket.status not in WAITING_STATUSES:
        return None
    aging_seconds = DispatchPolicy.load().aging_seconds_per_priority
    arrival = ticket_virtual_arrival(ticket=ticket, aging_seconds=aging_seconds)
    ahead = tickets_in_dispatch_order(
        Ticket.objects.filter(language=ticket.language, status__in=WAITING_STATUSES),
        aging_seconds=aging_seconds,
    ).filter(
        Q(virtual_arrival__lt=arrival)
        | Q(virtual_arrival=arrival, created_at__lt=ticket.created_at)
        | Q(virtual_arrival=arrival, created_at=ticket.created_at, id__lt=ticket.id)
    )
    return ahead.count() + 1


def ticket_estimated_wait_seconds(*, ticket: Ticket, position: int | None) -> int | None:
    """Seconds until this ticket is likely assigned, from the last hour's assignment rate.

    rate = tickets of this language whose skills include all of this ticket's skills, first
    assigned in the window, per second of the window; estimate = queue position / rate. None
    when no such ticket was assigned in the window: there is nothing honest to estimate from.
    """
    if position is None:
        return None
    since = timezone.now() - THROUGHPUT_WINDOW
    recent = Ticket.objects.filter(language=ticket.language, first_assigned_at__gte=since)
    skill_ids = [skill.pk for skill in ticket.skills.all()]
    if skill_ids:
        recent = recent.annotate(
            required_skills=Count("skills", filter=Q(skills__in=skill_ids), distinct=True)
        ).filter(required_skills=len(skill_ids))
    assigned = recent.count()
    if assigned == 0:
        return None
    return round(position * THROUGHPUT_WINDOW.total_seconds() / assigned)


def ticket_messages(*, ticket: Ticket, after: Message | None = None) -> QuerySet[Message]:
    messages = ticket.messages.order_by("position")
    if after is not None:
        messages = messages.filter(position__gt=after.position)
    return messages
