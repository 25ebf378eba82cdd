"""The routing engine's services: every write that offers, assigns or takes back a ticket.

Lock order, everywhere: ticket, then offer, then agent, and a step waits for its locks in that
order, holding at most one agent. Draining an agent locks the agent first, so it takes ticket
locks with SKIP LOCKED and never waits for one: no two steps can wait on each other in a cycle.
Waiting (rather than skipping) in the canonical order matters: a routing step that skipped the
best agent because a drain held its row for a moment would hand the ticket to a worse one.

Agents' ratings in the quality window (AgentRatings) are written only by a holder of the
ratings' window row (RatingsWindow): a rating locks it after its ticket, the sweep alone when it
moves the window. So a rating and the window's move never miss each other.
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from agents.events import agent_status_board_frame, status_frame
from agents.locks import lock_agent
from agents.models import Agent
from agents.push import push_to_agent_on_commit, push_to_board_on_commit
from tickets.audit import ticket_record_event, ticket_transition
from tickets.events import ticket_cancelled_frame, ticket_requeued_frame
from tickets.exceptions import Conflict, TicketClosed
from tickets.locks import lock_ticket
from tickets.models import Ticket
from tickets.selectors import tickets_in_dispatch_order
from tickets.webhooks import webhook_enqueue

from . import board, candidates, scoring
from .celery import enqueue_on_commit, queue_waiting
from .events import hello_frame, offer_created_frame, offer_revoked_frame, ticket_assigned_frame
from .models import AgentRatings, BoardSample, DispatchPolicy, Offer, RatingsWindow
from .rows import RowByKey
from .selectors import (
    agent_assigned_tickets,
    agent_load,
    agent_pending_offers,
    agent_room,
    agent_score_for,
    agents_ranked_for,
    agents_routable,
    sla_target_seconds,
    ticket_is_past_sla,
    tickets_past_sla_unflagged,
    tickets_queued_exist,
)

logger = logging.getLogger(__name__)

ROUTE_TASK = "dispatch.route_ticket"
DRAIN_TASK = "dispatch.drain_agent"
EXPIRE_TASK = "dispatch.expire_offer"
# The Celery queue of the routing engine's tasks (settings: CELERY_TASK_ROUTES).
ROUTING_QUEUE = "routing"

# How many queued tickets one sweep routes and how many agents with room it drains, at most.
# The sweep is the net under event-driven routing, not a second router: one that routed every
# takeable ticket and drained every agent with room held the routing worker for tens of seconds
# per run under a backlog at a thousand agents, while the routing tasks waited.
SWEEP_BATCH = 20

# How many candidates one routing step tries before giving up to the next event or sweep; the
# rest are either locked by a concurrent step (skipped) or full once re-checked under lock.
CANDIDATES_PER_STEP = 20

# Why a coordinator took a ticket from its holder, in the `offer.revoked` and `ticket.requeued`
# frames and the audit trail.
REASSIGNED = Offer.RevokeReason.REASSIGNED


# Raised when an offer is unknown or belongs to another agent (a 404 for that agent).
OfferDoesNotExist = Offer.DoesNotExist


class OfferNotPending(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The offer is no longer pending (it is {status}).")


class TicketNotAssignedToAgent(Conflict):
    def __init__(self, ticket: Ticket) -> None:
        super().__init__(f"The ticket is {ticket.status}, not assigned to you.")


class AgentNotActive(Conflict):
    def __init__(self, agent: Agent) -> None:
        super().__init__(f"{agent} is {agent.account_state}: only active agents take tickets.")


class AgentAtCapacity(Conflict):
    def __init__(self, agent: Agent, load: int) -> None:
        super().__init__(
            f"{agent} holds {load} of {agent.capacity} tickets; allow over capacity to add one."
        )


class TicketAlreadyWithAgent(Conflict):
    def __init__(self, agent: Agent) -> None:
        super().__init__(f"The ticket is already with {agent}.")


_LOCKED_OFFER = RowByKey(lambda: Offer.objects.select_for_update(no_key=True))


def lock_offer(offer_id: uuid.UUID) -> Offer:
    offer = _LOCKED_OFFER.get(offer_id)
    if offer is None:
        raise Offer.DoesNotExist(f"No offer {offer_id}.")
    return offer


def offer_revoke(*, offer: Offer, reason: str) -> None:
    """Revoke a locked pending offer for `reason`; its agent hears `offer.revoked` after
    commit. What becomes of the ticket is the caller's."""
    offer.status = Offer.Status.REVOKED
    offer.revoke_reason = reason
    offer.responded_at = timezone.now()
    offer.save(update_fields=["status", "revoke_reason", "responded_at"])
    push_to_agent_on_commit(offer.agent_id, offer_revoked_frame(offer, reason))


def ticket_request_routing(*, ticket: Ticket) -> None:
    """Ask a worker to route this ticket once the current transaction commits."""
    enqueue_on_commit(ROUTE_TASK, str(ticket.pk))


def agent_request_drain(*, agent: Agent) -> None:
    """Ask a worker to offer this agent the waiting tickets it can take, after commit.

    Only when, once the change committed, a ticket is queued and the agent could be offered it
    (active, available, under capacity): a ticket queued later is routed by its own task, which
    then sees this agent's room, and an agent full or away now sends its own request when that
    changes. So a storm of connects or status changes with nothing waiting sends no task at all,
    nor does an accept that leaves its agent full, as it does under a backlog: that was half of
    the drains sent, and each held the routing worker for a lock and a count that found no room.
    """
    agent_id = str(agent.pk)

    def request() -> None:
        if candidates.drain_wanted_read(agent_id=agent.pk):
            enqueue_on_commit(DRAIN_TASK, agent_id)

    transaction.on_commit(request)


def _agent_has_room(*, agent: Agent, policy: DispatchPolicy) -> int:
    """Free slots of a locked agent, re-read under its lock; 0 when not routable."""
    return agent_room(agent=agent, now=timezone.now(), policy=policy)


class _NoRoom(Exception):
    pass


def _lock_agent_with_room(*, agent_id: uuid.UUID, policy: DispatchPolicy) -> Agent | None:
    """The agent, locked, if it still has room; otherwise None, and no lock kept on it.

    Candidates come in score order, which differs from ticket to ticket: a step that kept the
    lock of each full agent it tried while waiting for the next could wait on a step that did
    the same in another order, a deadlock. Rolling back to the savepoint releases the lock.
    """
    try:
        with transaction.atomic():
            agent = lock_agent(agent_id)
            if agent is None or not _agent_has_room(agent=agent, policy=policy):
                raise _NoRoom
            return agent
    except _NoRoom:
        return None


def _ticket_flag_sla_breach(*, ticket: Ticket, policy: DispatchPolicy, now: datetime) -> bool:
    """Flag a locked ticket that waited past its first-assignment target; once per ticket."""
    if ticket.sla_breached or not ticket_is_past_sla(ticket=ticket, now=now, policy=policy):
        return False
    ticket.sla_breached = True
    ticket.sla_breached_at = now
    ticket.save(update_fields=["sla_breached", "sla_breached_at"])
    target = sla_target_seconds(policy=policy, priority=ticket.priority)
    waited = int((now - ticket.created_at).total_seconds())
    ticket_record_event(
        ticket=ticket,
        kind="sla_breached",
        detail={"target_seconds": target, "waited_seconds": waited},
    )
    logger.warning(
        "Ticket %s (%s) breached its %s s first-assignment target after %s s",
        ticket.pk,
        ticket.get_priority_display(),
        target,
        waited,
    )
    return True


def _offer_create(
    *,
    ticket: Ticket,
    agent: Agent,
    policy: DispatchPolicy,
    score: scoring.Score | None = None,
    by: AbstractBaseUser | None = None,
    detail: dict | None = None,
) -> Offer:
    """Offer a locked, queued ticket to a locked agent; `score` is why routing chose them,
    `by` the coordinator who chose instead."""
    now = timezone.now()
    _ticket_flag_sla_breach(ticket=ticket, policy=policy, now=now)
    offer = Offer.objects.create(
        ticket=ticket,
        agent=agent,
        expires_at=now + timedelta(seconds=policy.offer_timeout_seconds),
        score=score.total if score is not None else None,
        score_parts=score.parts if score is not None else {},
        assigned_by=by,
    )
    # Pushed first after commit, ahead of the board's nudge and the offer's timer: the customer
    # waits on this frame.
    push_to_agent_on_commit(agent.pk, offer_created_frame(offer))
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.OFFERED,
        kind="offered",
        agent=agent,
        actor=by,
        detail=detail if detail is not None else {"score": offer.score},
    )
    agent.idle_since = now
    agent.save(update_fields=["idle_since"])
    enqueue_on_commit(EXPIRE_TASK, str(offer.pk), countdown=policy.offer_timeout_seconds)
    return offer


@transaction.atomic
def ticket_route(*, ticket_id: uuid.UUID) -> Offer | None:
    """Offer a queued ticket to the best-scoring eligible agent; None when nobody can take it
    now. A ticket past its SLA target is flagged here too."""
    ticket = lock_ticket(ticket_id)
    if ticket is None or ticket.status != Ticket.Status.QUEUED:
        return None
    policy = DispatchPolicy.load()
    now = timezone.now()
    _ticket_flag_sla_breach(ticket=ticket, policy=policy, now=now)
    candidates = agents_ranked_for(ticket=ticket, now=now, policy=policy, limit=CANDIDATES_PER_STEP)
    for candidate in candidates:
        agent = _lock_agent_with_room(agent_id=candidate.agent_id, policy=policy)
        if agent is not None:
            return _offer_create(ticket=ticket, agent=agent, policy=policy, score=candidate.score)
    return None


@transaction.atomic
def agent_drain(*, agent_id: uuid.UUID) -> list[Offer]:
    """Offer an agent the waiting tickets it can take, best ticket first, up to its capacity.

    Each offer records the agent's score among the ticket's current candidates, so that a
    coordinator sees the same reasons as for a routed offer.
    """
    if not tickets_queued_exist():
        # Nothing waits; a ticket queued after this look is routed by its own task, which
        # sees this agent's room.
        return []
    agent = lock_agent(agent_id)
    if agent is None:
        return []
    policy = DispatchPolicy.load()
    room = _agent_has_room(agent=agent, policy=policy)
    offers: list[Offer] = []
    if room == 0:
        return offers
    now = timezone.now()
    waiting = candidates.waiting_ticket_ids_read(
        agent=agent, now=now, policy=policy, limit=room + CANDIDATES_PER_STEP
    )
    for ticket_id in waiting:
        ticket = lock_ticket(ticket_id, skip_locked=True)
        if ticket is None or ticket.status != Ticket.Status.QUEUED:
            continue
        score = agent_score_for(ticket=ticket, agent_id=agent.pk, now=now, policy=policy)
        if score is None:
            # The ticket stopped being one this agent may take since the list was read.
            continue
        offers.append(_offer_create(ticket=ticket, agent=agent, policy=policy, score=score))
        if len(offers) == room:
            break
    return offers


def _offer_for_update(*, offer_id: uuid.UUID) -> tuple[Ticket, Offer]:
    ticket_id = Offer.objects.values_list("ticket_id", flat=True).get(pk=offer_id)
    ticket = lock_ticket(ticket_id)
    return ticket, lock_offer(offer_id)


def _agent_answered(*, agent: Agent) -> None:
    """An answer, either way, shows the agent is there: their run of misses ends."""
    Agent.objects.filter(pk=agent.pk, consecutive_misses__gt=0).update(consecutive_misses=0)


@transaction.atomic
def offer_accept(*, offer_id: uuid.UUID, agent: Agent) -> Ticket:
    """Accept a pending offer of this agent's; the ticket becomes theirs, and any room the
    agent still has is offered the next waiting tickets."""
    ticket, offer = _offer_for_update(offer_id=offer_id)
    if offer.agent_id != agent.pk:
        raise OfferDoesNotExist
    now = timezone.now()
    if offer.status != Offer.Status.PENDING:
        raise OfferNotPending(offer.status)
    if offer.expires_at <= now:
        # The expiry itself is written by the offer's timer or the sweep, not by this refusal.
        raise OfferNotPending(Offer.Status.EXPIRED)
    offer.status = Offer.Status.ACCEPTED
    offer.responded_at = now
    offer.save(update_fields=["status", "responded_at"])
    _ticket_assign(ticket=ticket, agent=agent, now=now)
    _agent_answered(agent=agent)
    agent_request_drain(agent=agent)
    return ticket


def _ticket_assign(
    *,
    ticket: Ticket,
    agent: Agent,
    now: datetime,
    by: AbstractBaseUser | None = None,
    detail: dict | None = None,
) -> None:
    """Make a locked ticket the agent's, tell the bot and the agent."""
    # A first assignment that comes past the target is a breach even if no sweep saw it wait.
    _ticket_flag_sla_breach(ticket=ticket, policy=DispatchPolicy.load(), now=now)
    ticket.agent = agent
    ticket.assigned_at = now
    if ticket.first_assigned_at is None:
        ticket.first_assigned_at = now
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.ASSIGNED,
        kind="assigned",
        agent=agent,
        actor=by,
        detail=detail,
        update_fields=("agent", "assigned_at", "first_assigned_at"),
    )
    # The agent's frame leaves before the bot's webhook task: the agent is waiting on it.
    push_to_agent_on_commit(agent.pk, ticket_assigned_frame(ticket))
    webhook_enqueue(ticket=ticket, event="ticket.assigned")


def _offer_close(*, ticket: Ticket, offer: Offer, status: str, kind: str, detail: dict) -> None:
    offer.status = status
    offer.responded_at = timezone.now()
    offer.save(update_fields=["status", "responded_at", "decline_reason", "revoke_reason"])
    ticket_transition(
        ticket=ticket, to_status=Ticket.Status.QUEUED, kind=kind, agent=offer.agent, detail=detail
    )
    ticket_request_routing(ticket=ticket)
    agent_request_drain(agent=offer.agent)


@transaction.atomic
def offer_decline(*, offer_id: uuid.UUID, agent: Agent, reason: str = "") -> Offer:
    """Decline a pending offer; the ticket goes to someone else and never back to this agent."""
    ticket, offer = _offer_for_update(offer_id=offer_id)
    if offer.agent_id != agent.pk:
        raise OfferDoesNotExist
    if offer.status != Offer.Status.PENDING:
        raise OfferNotPending(offer.status)
    offer.decline_reason = reason
    _offer_close(
        ticket=ticket,
        offer=offer,
        status=Offer.Status.DECLINED,
        kind="declined",
        detail={"reason": reason} if reason else {},
    )
    _agent_answered(agent=agent)
    return offer


def offer_expire(*, offer_id: uuid.UUID) -> bool:
    """Expire an overdue pending offer, a miss for its agent; False when it was answered in
    time (or is gone). After the policy's number of misses in a row the agent is set away."""
    # Every offer's timer fires, nearly always after the offer was answered, and an answered
    # offer is never pending again: one read without a transaction or a lock ends those.
    if not Offer.objects.filter(pk=offer_id, status=Offer.Status.PENDING).exists():
        return False
    return _offer_expire_locked(offer_id=offer_id)


@transaction.atomic
def _offer_expire_locked(*, offer_id: uuid.UUID) -> bool:
    try:
        ticket, offer = _offer_for_update(offer_id=offer_id)
    except Offer.DoesNotExist:
        # Deleted with its ticket before its timer fired: nothing left to expire.
        return False
    if offer.status != Offer.Status.PENDING or offer.expires_at > timezone.now():
        return False
    offer.revoke_reason = Offer.RevokeReason.EXPIRED
    _offer_close(ticket=ticket, offer=offer, status=Offer.Status.EXPIRED, kind="expired", detail={})
    push_to_agent_on_commit(offer.agent_id, offer_revoked_frame(offer, Offer.RevokeReason.EXPIRED))
    _agent_count_miss(agent_id=offer.agent_id, policy=DispatchPolicy.load())
    return True


def _agent_count_miss(*, agent_id: uuid.UUID, policy: DispatchPolicy) -> None:
    agent = lock_agent(agent_id)
    # Misses count only against an agent routing believes is there; one already away or
    # offline has nothing more to switch.
    if agent is None or agent.status != Agent.Status.AVAILABLE:
        return
    agent.consecutive_misses += 1
    if agent.consecutive_misses >= policy.max_consecutive_misses:
        # An absent freelancer would stall every ticket offered to them for a whole time-out;
        # away, they get none until they come back and say so.
        logger.info("Agent %s missed %s offers in a row: away", agent.pk, agent.consecutive_misses)
        agent.status = Agent.Status.AWAY
        agent.consecutive_misses = 0
        # As agents.services.agent_set_status tells it (which this module cannot import
        # without a cycle): the agent's tabs and the coordinators' board.
        push_to_agent_on_commit(agent.pk, status_frame(agent))
        push_to_board_on_commit(agent_status_board_frame(agent))
    agent.save(update_fields=["consecutive_misses", "status"])


@transaction.atomic
def ticket_release(*, ticket_id: uuid.UUID, agent: Agent, reason: str = "") -> Ticket:
    """The agent hands an assigned ticket back to the queue; it is not offered to them again."""
    ticket = lock_ticket(ticket_id)
    if ticket is None or ticket.agent_id != agent.pk:
        raise Ticket.DoesNotExist
    if ticket.status != Ticket.Status.ASSIGNED:
        raise TicketNotAssignedToAgent(ticket)
    Offer.objects.filter(
        ticket=ticket, agent=agent, status=Offer.Status.ACCEPTED, released_at__isnull=True
    ).update(released_at=timezone.now())
    ticket.agent = None
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.QUEUED,
        kind="released",
        agent=agent,
        detail={"reason": reason} if reason else {},
        update_fields=("agent",),
    )
    webhook_enqueue(ticket=ticket, event="ticket.requeued")
    ticket_request_routing(ticket=ticket)
    agent_request_drain(agent=agent)
    return ticket


def ticket_withdraw(*, ticket: Ticket, actor: AbstractBaseUser | None = None) -> None:
    """Take a locked ticket away from whoever has it, because it is being cancelled."""
    pending = Offer.objects.filter(ticket=ticket, status=Offer.Status.PENDING).first()
    if pending is not None:
        offer_revoke(offer=pending, reason=Offer.RevokeReason.CANCELLED)
        agent_request_drain(agent=pending.agent)
    if ticket.agent_id is not None and ticket.status == Ticket.Status.ASSIGNED:
        push_to_agent_on_commit(ticket.agent_id, ticket_cancelled_frame(ticket))
        agent_request_drain(agent=ticket.agent)


def _ticket_take_back(*, ticket: Ticket, by: AbstractBaseUser, note: str = "") -> None:
    """Requeue a locked ticket from whoever holds it, for a coordinator's reassignment; `note`,
    the coordinator's words, goes into the audit event."""
    now = timezone.now()
    detail = {"reason": REASSIGNED, "note": note} if note else {"reason": REASSIGNED}
    if ticket.status == Ticket.Status.OFFERED:
        pending = lock_offer(
            Offer.objects.values_list("pk", flat=True).get(
                ticket=ticket, status=Offer.Status.PENDING
            )
        )
        offer_revoke(offer=pending, reason=REASSIGNED)
        ticket_transition(
            ticket=ticket,
            to_status=Ticket.Status.QUEUED,
            kind="revoked",
            agent=pending.agent,
            actor=by,
            detail=detail,
        )
        agent_request_drain(agent=pending.agent)
    elif ticket.status == Ticket.Status.ASSIGNED:
        previous = ticket.agent
        Offer.objects.filter(
            ticket=ticket, agent=previous, status=Offer.Status.ACCEPTED, released_at__isnull=True
        ).update(released_at=now, revoke_reason=REASSIGNED)
        ticket.agent = None
        ticket_transition(
            ticket=ticket,
            to_status=Ticket.Status.QUEUED,
            kind="requeued",
            agent=previous,
            actor=by,
            detail=detail,
            update_fields=("agent",),
        )
        webhook_enqueue(ticket=ticket, event="ticket.requeued")
        push_to_agent_on_commit(previous.pk, ticket_requeued_frame(ticket, reason=REASSIGNED))
        agent_request_drain(agent=previous)


def _ticket_hand_over(
    *, ticket_id: uuid.UUID, agent_id: uuid.UUID, by: AbstractBaseUser, allow_over_capacity: bool
) -> tuple[Ticket, Agent, dict]:
    """Lock a ticket and the agent a coordinator named, check that the agent may take it, and
    requeue the ticket from its holder; returns both and the audit detail of the hand-over."""
    ticket = lock_ticket(ticket_id)
    if ticket is None:
        raise Ticket.DoesNotExist
    if ticket.is_final:
        raise TicketClosed(ticket.status)
    holder = (
        ticket.agent_id
        if ticket.status == Ticket.Status.ASSIGNED
        else Offer.objects.filter(ticket=ticket, status=Offer.Status.PENDING)
        .values_list("agent_id", flat=True)
        .first()
    )
    target = Agent.objects.get(pk=agent_id)
    if holder == target.pk:
        raise TicketAlreadyWithAgent(target)
    _ticket_take_back(ticket=ticket, by=by)
    agent = lock_agent(agent_id)
    if agent.account_state != Agent.AccountState.ACTIVE:
        raise AgentNotActive(agent)
    load = agent_load(agent=agent)
    if load >= agent.capacity and not allow_over_capacity:
        raise AgentAtCapacity(agent, load)
    return ticket, agent, {"by_coordinator": True, "over_capacity": load >= agent.capacity}


@transaction.atomic
def ticket_offer_to(
    *,
    ticket_id: uuid.UUID,
    agent_id: uuid.UUID,
    by: AbstractBaseUser,
    allow_over_capacity: bool = False,
) -> Offer:
    """A coordinator offers a ticket to a named agent, bypassing the score and the filters.

    Whoever holds the ticket loses it first (their offer is revoked, or their assignment
    requeued). An agent at capacity is refused unless `allow_over_capacity`; the audit trail
    names the coordinator and whether capacity was exceeded.
    """
    ticket, agent, detail = _ticket_hand_over(
        ticket_id=ticket_id, agent_id=agent_id, by=by, allow_over_capacity=allow_over_capacity
    )
    return _offer_create(
        ticket=ticket, agent=agent, policy=DispatchPolicy.load(), by=by, detail=detail
    )


@transaction.atomic
def ticket_assign_to(
    *,
    ticket_id: uuid.UUID,
    agent_id: uuid.UUID,
    by: AbstractBaseUser,
    allow_over_capacity: bool = False,
) -> Ticket:
    """A coordinator assigns a ticket to a named agent outright, without an offer to answer.

    As ticket_offer_to: the holder loses it first, capacity is exceeded only when allowed, and
    the audit trail names the coordinator.
    """
    ticket, agent, detail = _ticket_hand_over(
        ticket_id=ticket_id, agent_id=agent_id, by=by, allow_over_capacity=allow_over_capacity
    )
    now = timezone.now()
    Offer.objects.create(
        ticket=ticket,
        agent=agent,
        status=Offer.Status.ACCEPTED,
        expires_at=now,
        responded_at=now,
        assigned_by=by,
    )
    _ticket_assign(ticket=ticket, agent=agent, now=now, by=by, detail=detail)
    agent.idle_since = now
    agent.save(update_fields=["idle_since"])
    return ticket


class TicketNotHeld(Conflict):
    def __init__(self, ticket: Ticket) -> None:
        super().__init__(f"The ticket is {ticket.status}: no agent holds it.")


def _ticket_holder_id(*, ticket: Ticket) -> uuid.UUID | None:
    """The agent a locked ticket is offered or assigned to, if any."""
    if ticket.status == Ticket.Status.ASSIGNED:
        return ticket.agent_id
    if ticket.status == Ticket.Status.OFFERED:
        return (
            Offer.objects.filter(ticket=ticket, status=Offer.Status.PENDING)
            .values_list("agent_id", flat=True)
            .first()
        )
    return None


@transaction.atomic
def ticket_requeue(*, ticket_id: uuid.UUID, by: AbstractBaseUser, note: str = "") -> Ticket:
    """A coordinator takes an offered or assigned ticket back from its agent and routes it again.

    The agent hears `offer.revoked` or `ticket.requeued` (reason `reassigned`), the bot gets
    `ticket.requeued` when the ticket was assigned, and the audit event names the coordinator
    and carries the note. Being taken back is not the agent's choice, so the agent stays a
    candidate, ranked like any other.
    """
    ticket = lock_ticket(ticket_id)
    if ticket is None:
        raise Ticket.DoesNotExist
    if ticket.is_final:
        raise TicketClosed(ticket.status)
    if _ticket_holder_id(ticket=ticket) is None:
        raise TicketNotHeld(ticket)
    _ticket_take_back(ticket=ticket, by=by, note=note)
    # Routed here, under the ticket's lock, so that it goes to the best candidate: the drain of
    # the previous holder, sent after commit, would otherwise offer it straight back to them.
    if ticket_route(ticket_id=ticket.pk) is None:
        ticket_request_routing(ticket=ticket)
    ticket.refresh_from_db()
    return ticket


def agent_take_back_work(
    *, agent_id: uuid.UUID, by: AbstractBaseUser, note: str = ""
) -> list[uuid.UUID]:
    """Take back every ticket an agent holds (pending offers and assigned tickets) and route
    each again; returns the ids of the tickets taken back.

    Meant for an agent that routing no longer gives work (suspended), so nothing new arrives
    while this runs. Each ticket is taken back in a transaction of its own, locked in the
    canonical order (ticket, offer, agent), and left alone if it moved on meanwhile.
    """
    offered = Offer.objects.filter(agent_id=agent_id, status=Offer.Status.PENDING).values_list(
        "ticket_id", flat=True
    )
    assigned = Ticket.objects.filter(agent_id=agent_id, status=Ticket.Status.ASSIGNED).values_list(
        "pk", flat=True
    )
    taken = []
    for ticket_id in sorted({*offered, *assigned}):
        with transaction.atomic():
            ticket = lock_ticket(ticket_id)
            if ticket is None or _ticket_holder_id(ticket=ticket) != agent_id:
                continue
            _ticket_take_back(ticket=ticket, by=by, note=note)
            ticket_request_routing(ticket=ticket)
            taken.append(ticket_id)
    return taken


def offers_expire_overdue() -> int:
    """Expire every overdue pending offer (the sweep's net under the per-offer timers)."""
    overdue = Offer.objects.filter(
        status=Offer.Status.PENDING, expires_at__lte=timezone.now()
    ).values_list("pk", flat=True)
    return sum(offer_expire(offer_id=offer_id) for offer_id in list(overdue))


def tickets_flag_sla_breaches() -> int:
    """Flag every waiting ticket past its first-assignment target; returns how many."""
    policy = DispatchPolicy.load()
    overdue = list(
        tickets_past_sla_unflagged(now=timezone.now(), policy=policy).values_list("pk", flat=True)
    )
    flagged = 0
    for ticket_id in overdue:
        with transaction.atomic():
            # A ticket locked right now is being routed or answered, and that step flags it.
            ticket = lock_ticket(ticket_id, skip_locked=True)
            if ticket is not None and ticket.status in (
                Ticket.Status.QUEUED,
                Ticket.Status.OFFERED,
            ):
                flagged += _ticket_flag_sla_breach(ticket=ticket, policy=policy, now=timezone.now())
    return flagged


def tickets_route_waiting() -> int:
    """Route the first SWEEP_BATCH queued tickets in dispatch order, each to its best-scoring
    agent as on escalation; returns the offers made."""
    policy = DispatchPolicy.load()
    head = tickets_in_dispatch_order(
        Ticket.objects.filter(status=Ticket.Status.QUEUED),
        aging_seconds=policy.aging_seconds_per_priority,
    ).values_list("pk", flat=True)[:SWEEP_BATCH]
    return sum(ticket_route(ticket_id=ticket_id) is not None for ticket_id in list(head))


def dispatch_sweep() -> int:
    """Expire overdue offers, flag SLA breaches, offer waiting tickets that someone can take
    now, and move the ratings' window (last, so that nothing there holds the routing back);
    returns the offers made.

    Routing is event-driven; this repairs whatever a lost task, worker or Redis message left
    behind, so a lost event costs seconds, not a ticket. Tickets at the head of the queue are
    routed first, so each goes to its best agent; then agents with room, a different sample
    each run, are drained: that reaches a ticket further back whose task was lost, even while
    the head holds tickets nobody can take yet. Each step is bounded by SWEEP_BATCH, so under a
    backlog the sweep never holds the routing worker for long, and the next sweeps go on where
    this one stopped.

    While routing tasks wait in their queue, the sweep leaves the routing to them: the queued
    tickets are theirs (or an accepting or resolving agent's drain's), and routing them here
    too only delayed those tasks further, so that under load the workers fell ever further
    behind. A ticket whose task was lost is routed by the first sweep that finds the queue
    empty, or by a drain before that.
    """
    offers_expire_overdue()
    tickets_flag_sla_breaches()
    made = _tickets_route_stranded()
    try:
        ratings_window_move(now=timezone.now(), policy=DispatchPolicy.load())
    except IntegrityError:
        # Taking out the ratings the window leaves would bring an agent's counts below zero:
        # the counts were changed, or the tickets under them, outside the services.
        logger.exception(
            "The agents' ratings counts no longer match their rated tickets, so the quality "
            "window was not moved; run `python manage.py recount_ratings` to count them anew"
        )
    return made


def _tickets_route_stranded() -> int:
    """The sweep's routing: the head of the queue, then a sample of agents with room."""
    if not tickets_queued_exist():
        # Nothing waits: no ticket to route, no agent to drain. A pool of a thousand idle
        # agents costs one query here, not a thousand.
        return 0
    if queue_waiting(ROUTING_QUEUE):
        return 0
    made = tickets_route_waiting()
    policy = DispatchPolicy.load()
    agent_ids = list(
        agents_routable(now=timezone.now(), policy=policy)
        .order_by("?")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    return made + sum(len(agent_drain(agent_id=agent_id)) for agent_id in agent_ids)


def agent_snapshot(*, agent: Agent) -> dict:
    """The `hello` frame: the agent's whole state, so a (re)connecting client resyncs."""
    return hello_frame(
        agent,
        offers=agent_pending_offers(agent=agent),
        tickets=agent_assigned_tickets(agent=agent),
    )


def agent_offers(*, agent: Agent) -> list[Offer]:
    return agent_pending_offers(agent=agent)


def agent_tickets(*, agent: Agent) -> list[Ticket]:
    return agent_assigned_tickets(agent=agent)


def board_sample_take(*, now: datetime, policy: DispatchPolicy) -> BoardSample:
    """Record the queue depth and the agents online at `now` for the board's charts, and
    delete samples past the board's SAMPLE_RETENTION."""
    sample = BoardSample.objects.create(
        taken_at=now,
        queue_depth=Ticket.objects.filter(status__in=board.WAITING_STATUSES).count(),
        agents_online=board.agents_online_count(now=now, policy=policy),
    )
    BoardSample.objects.filter(taken_at__lt=now - board.SAMPLE_RETENTION).delete()
    return sample


def _rated_by_agent(
    *, since: datetime, until: datetime | None = None
) -> dict[uuid.UUID, tuple[int, int]]:
    """Each agent's rated tickets resolved from `since` (until `until`): (count, sum)."""
    rated = Ticket.objects.filter(
        status=Ticket.Status.RESOLVED,
        csat_score__isnull=False,
        agent__isnull=False,
        resolved_at__gte=since,
    )
    if until is not None:
        rated = rated.filter(resolved_at__lt=until)
    rows = rated.order_by().values("agent").annotate(count=Count("pk"), total=Sum("csat_score"))
    return {row["agent"]: (row["count"], row["total"]) for row in rows}


def _ratings_count_afresh(*, start: datetime) -> None:
    """Count every agent's ratings from `start` on anew, replacing the counts kept."""
    AgentRatings.objects.all().delete()
    AgentRatings.objects.bulk_create(
        AgentRatings(agent_id=agent_id, ratings_count=count, ratings_sum=total)
        for agent_id, (count, total) in _rated_by_agent(since=start).items()
    )


def _ratings_window_lock(*, now: datetime, policy: DispatchPolicy) -> RatingsWindow:
    """The ratings' window, locked for the rest of the transaction. In a database without one
    (its migration creates it; a test's flush removes it), it is created at the policy's window
    and every agent's ratings are counted afresh."""
    window = RatingsWindow.objects.select_for_update().filter(pk=1).first()
    if window is None:
        start = now - timedelta(days=policy.quality_window_days)
        _, created = RatingsWindow.objects.get_or_create(pk=1, defaults={"start": start})
        if created:
            _ratings_count_afresh(start=start)
        window = RatingsWindow.objects.select_for_update().get(pk=1)
    return window


def _agents_ratings_add(changes: dict[uuid.UUID, tuple[int, int]]) -> None:
    """Add each agent's (count, sum) to its ratings. Only a holder of the ratings' window
    writes them, so they are read and written back in bulk: a day's move of the window over a
    thousand agents took 1.2 s one agent at a time."""
    kept = AgentRatings.objects.in_bulk(list(changes))
    new = []
    for agent_id, (count, total) in changes.items():
        ratings = kept.get(agent_id)
        if ratings is None:
            ratings = AgentRatings(agent_id=agent_id)
            new.append(ratings)
        ratings.ratings_count += count
        ratings.ratings_sum += total
    AgentRatings.objects.bulk_update(kept.values(), ["ratings_count", "ratings_sum"])
    AgentRatings.objects.bulk_create(new)


def agent_ratings_record(*, ticket: Ticket, score: int) -> None:
    """Count `score`, a locked resolved ticket's new CSAT score, in its agent's ratings in place
    of the ticket's score as stored, when it was resolved within the ratings' window; called
    before the ticket is saved with it."""
    window = _ratings_window_lock(now=timezone.now(), policy=DispatchPolicy.load())
    if ticket.agent_id is None or ticket.resolved_at < window.start:
        return
    _agents_ratings_add(
        {
            ticket.agent_id: (
                0 if ticket.csat_score is not None else 1,
                score - (ticket.csat_score or 0),
            )
        }
    )


@transaction.atomic
def ratings_window_move(*, now: datetime, policy: DispatchPolicy) -> None:
    """Move the ratings' window to start the policy's quality_window_days before `now`: the
    ratings it leaves behind are taken out of their agents' counts; if the window grew, the
    ratings it now takes in are added."""
    window = _ratings_window_lock(now=now, policy=policy)
    start = now - timedelta(days=policy.quality_window_days)
    if start > window.start:
        changes, sign = _rated_by_agent(since=window.start, until=start), -1
    else:
        changes, sign = _rated_by_agent(since=start, until=window.start), 1
    _agents_ratings_add(
        {agent_id: (sign * count, sign * total) for agent_id, (count, total) in changes.items()}
    )
    window.start = start
    window.save(update_fields=["start"])


@transaction.atomic
def ratings_count_afresh(*, now: datetime, policy: DispatchPolicy) -> None:
    """Count every agent's ratings in the policy's quality window anew, for ratings written
    without their service (a bulk load)."""
    window = _ratings_window_lock(now=now, policy=policy)
    window.start = now - timedelta(days=policy.quality_window_days)
    window.save(update_fields=["start"])
    _ratings_count_afresh(start=window.start)
