from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import Message, Ticket

# Recent throughput is measured over this window for the wait estimate.
THROUGHPUT_WINDOW = timedelta(hours=1)


def tickets_waiting(*, language: str) -> QuerySet[Ticket]:
    """The tickets of one language that still wait for an agent, in dispatch order."""
    return Ticket.objects.filter(
        language=language, status__in=[Ticket.Status.QUEUED, Ticket.Status.OFFERED]
    ).order_by("-priority", "created_at", "id")


def ticket_queue_position(*, ticket: Ticket) -> int | None:
    """1-based place among the waiting tickets of the same language; None once not waiting."""
    if ticket.status not in (Ticket.Status.QUEUED, Ticket.Status.OFFERED):
        return None
    ahead = tickets_waiting(language=ticket.language).filter(
        Q(priority__gt=ticket.priority)
        | Q(priority=ticket.priority, created_at__lt=ticket.created_at)
        | Q(priority=ticket.priority, created_at=ticket.created_at, id__lt=ticket.id)
    )
    return ahead.count() + 1


def ticket_estimated_wait_seconds(*, ticket: Ticket, position: int | None) -> int | None:
    """Seconds until this ticket is likely assigned, from the last hour's assignment rate.

    rate = tickets of this language first assigned in the window / window length;
    estimate = queue position / rate. None when nothing was assigned in the window.
    """
    if position is None:
        return None
    since = timezone.now() - THROUGHPUT_WINDOW
    assigned = Ticket.objects.filter(language=ticket.language, first_assigned_at__gte=since).count()
    if assigned == 0:
        return None
    return round(position * THROUGHPUT_WINDOW.total_seconds() / assigned)


def ticket_messages(*, ticket: Ticket, after: Message | None = None) -> QuerySet[Message]:
    messages = ticket.messages.order_by("position")
    if after is not None:
        messages = messages.filter(position__gt=after.position)
    return messages
