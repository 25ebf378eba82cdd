from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Case, DateTimeField, Exists, F, OuterRef, QuerySet, When
from django.utils import timezone

from agents.models import Skill

# The queue order is the dispatcher's and its aging rate is a dispatch-policy setting: this
# reads that one row, no routing logic. dispatch.models imports only the tickets and agents
# models, so this makes no import cycle.
from dispatch.models import DispatchPolicy

from .models import Message, Ticket

# Recent throughput is measured over this window for the wait estimate, from at most this
# many of its latest assignments.
THROUGHPUT_WINDOW = timedelta(hours=1)
RATE_SAMPLE = 200

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
    once not waiting.

    The tickets served before this one (see tickets_in_dispatch_order) are counted through
    plain comparisons of priority, creation and id. A ticket of priority p created at c arrives
    virtually at c - p × aging_seconds, so it comes first when created before this ticket's
    virtual arrival plus p × aging_seconds; created exactly then, it ties and the older one,
    then the lower id, goes first. The count is written by hand: built through the ORM, a
    position cost 1.6-2.0 ms of CPU (the policy read included), most of it Django compiling the
    conditions; now 0.6-0.7 ms.
    """
    if ticket.status not in WAITING_STATUSES:
        return None
    aging_seconds = DispatchPolicy.load().aging_seconds_per_priority
    arrival = ticket_virtual_arrival(ticket=ticket, aging_seconds=aging_seconds)
    adapt = connection.ops.adapt_datetimefield_value
    ticket_id = Ticket._meta.pk.get_db_prep_value(ticket.pk, connection)
    conditions, params = [], [ticket.language, *(status.value for status in WAITING_STATUSES)]
    for priority in Ticket.Priority.values:
        tie = arrival + timedelta(seconds=priority * aging_seconds)
        if tie < ticket.created_at:
            conditions.append("(priority = %s AND created_at <= %s)")
            params += [priority, adapt(tie)]
        elif tie > ticket.created_at:
            conditions.append("(priority = %s AND created_at < %s)")
            params += [priority, adapt(tie)]
        else:
            conditions.append(
                "(priority = %s AND (created_at < %s OR (created_at = %s AND id < %s)))"
            )
            params += [priority, adapt(tie), adapt(tie), ticket_id]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM tickets_ticket WHERE language = %s AND status IN (%s, %s)"
            f" AND ({' OR '.join(conditions)})",
            params,
        )
        (ahead,) = cursor.fetchone()
    return ahead + 1


def ticket_estimated_wait_seconds(
    *, ticket: Ticket, skills: list[Skill], position: int | None
) -> int | None:
    """Seconds until this ticket is likely assigned, from the recent assignment rate.

    Like tickets: of this language, whose skills include all of this ticket's `skills`. The rate
    is the like tickets first assigned in the last hour per second of the hour; once more than
    RATE_SAMPLE were, it is the latest RATE_SAMPLE per second since the assignment before
    them, so that the estimate reads a bounded number of rows however busy the hour. estimate =
    queue position / rate. None when no like ticket was assigned in the hour: there is nothing
    honest to estimate from.
    """
    if position is None:
        return None
    now = timezone.now()
    recent = Ticket.objects.filter(
        language=ticket.language, first_assigned_at__gte=now - THROUGHPUT_WINDOW
    )
    for skill in skills:
        recent = recent.filter(
            Exists(Ticket.skills.through.objects.filter(ticket=OuterRef("pk"), skill=skill))
        )
    latest = list(
        recent.order_by("-first_assigned_at").values_list("first_assigned_at", flat=True)[
            : RATE_SAMPLE + 1
        ]
    )
    if not latest:
        return None
    if len(latest) <= RATE_SAMPLE:
        span, assigned = THROUGHPUT_WINDOW.total_seconds(), len(latest)
    else:
        # The latest RATE_SAMPLE assignments came in the time since the one before them.
        span, assigned = (now - latest[-1]).total_seconds(), RATE_SAMPLE
    return round(position * span / assigned)


def ticket_messages(*, ticket: Ticket, after: Message | None = None) -> QuerySet[Message]:
    messages = ticket.messages.order_by("position")
    if after is not None:
        messages = messages.filter(position__gt=after.position)
    return messages
