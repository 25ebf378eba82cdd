"""The routing engine's services: every write that offers, assigns or takes back a ticket.

Lock order, everywhere: ticket, then offer, then agent, and a step waits for its locks in that
order. Draining an agent locks the agent first, so it takes ticket locks with SKIP LOCKED and
never waits for one: no two steps can wait on each other in a cycle. Waiting (rather than
skipping) in the canonical order matters: a routing step that skipped the best agent because
a drain held its row for a moment would hand the ticket to a worse one.
"""

import logging
import uuid
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.locks import lock_agent
from agents.models import Agent
from agents.push import push_to_agent_on_commit
from tickets.audit import ticket_transition
from tickets.events import ticket_cancelled_frame
from tickets.exceptions import Conflict
from tickets.locks import lock_ticket
from tickets.models import Ticket
from tickets.webhooks import webhook_enqueue

from .celery import enqueue_on_commit
from .events import hello_frame, offer_created_frame, offer_revoked_frame, ticket_assigned_frame
from .models import DispatchPolicy, Offer
from .selectors import (
    agent_assigned_tickets,
    agent_is_connected,
    agent_load,
    agent_pending_offers,
    agents_eligible_for,
    agents_routable,
    tickets_waiting_for,
)

logger = logging.getLogger(__name__)

ROUTE_TASK = "dispatch.route_ticket"
DRAIN_TASK = "dispatch.drain_agent"
EXPIRE_TASK = "dispatch.expire_offer"

# How many candidates one routing step tries before giving up to the next event or sweep; the
# rest are either locked by a concurrent step (skipped) or full once re-checked under lock.
CANDIDATES_PER_STEP = 20


# Raised when an offer is unknown or belongs to another agent (a 404 for that agent).
OfferDoesNotExist = Offer.DoesNotExist


class OfferNotPending(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The offer is no longer pending (it is {status}).")


class TicketNotAssignedToAgent(Conflict):
    def __init__(self, ticket: Ticket) -> None:
        super().__init__(f"The ticket is {ticket.status}, not assigned to you.")


def lock_offer(offer_id: uuid.UUID) -> Offer:
    return Offer.objects.select_for_update(no_key=True).get(pk=offer_id)


def ticket_request_routing(*, ticket: Ticket) -> None:
    """Ask a worker to route this ticket once the current transaction commits."""
    enqueue_on_commit(ROUTE_TASK, str(ticket.pk))


def agent_request_drain(*, agent: Agent) -> None:
    """Ask a worker to offer this agent the waiting tickets it can take, after commit."""
    enqueue_on_commit(DRAIN_TASK, str(agent.pk))


def _agent_has_room(*, agent: Agent, policy: DispatchPolicy) -> int:
    """Free slots of a locked agent, re-checked under its lock; 0 when not routable."""
    if (
        agent.account_state != Agent.AccountState.ACTIVE
        or agent.status != Agent.Status.AVAILABLE
        or not agent_is_connected(agent=agent, now=timezone.now(), policy=policy)
    ):
        return 0
    return max(agent.capacity - agent_load(agent=agent), 0)


def _offer_create(*, ticket: Ticket, agent: Agent, policy: DispatchPolicy) -> Offer:
    now = timezone.now()
    offer = Offer.objects.create(
        ticket=ticket,
        agent=agent,
        expires_at=now + timedelta(seconds=policy.offer_timeout_seconds),
    )
    ticket_transition(ticket=ticket, to_status=Ticket.Status.OFFERED, kind="offered", agent=agent)
    agent.idle_since = now
    agent.save(update_fields=["idle_since"])
    push_to_agent_on_commit(agent.pk, offer_created_frame(offer))
    enqueue_on_commit(EXPIRE_TASK, str(offer.pk), countdown=policy.offer_timeout_seconds)
    return offer


@transaction.atomic
def ticket_route(*, ticket_id: uuid.UUID) -> Offer | None:
    """Offer a queued ticket to the best eligible agent; None when nobody can take it now."""
    ticket = lock_ticket(ticket_id)
    if ticket is None or ticket.status != Ticket.Status.QUEUED:
        return None
    policy = DispatchPolicy.load()
    candidates = agents_eligible_for(ticket=ticket, now=timezone.now(), policy=policy)
    for candidate in candidates[:CANDIDATES_PER_STEP]:
        agent = lock_agent(candidate.pk)
        if agent is not None and _agent_has_room(agent=agent, policy=policy):
            return _offer_create(ticket=ticket, agent=agent, policy=policy)
    return None


@transaction.atomic
def agent_drain(*, agent_id: uuid.UUID) -> list[Offer]:
    """Offer an agent the waiting tickets it can take, best ticket first, up to its capacity."""
    agent = lock_agent(agent_id)
    if agent is None:
        return []
    policy = DispatchPolicy.load()
    room = _agent_has_room(agent=agent, policy=policy)
    offers: list[Offer] = []
    if room == 0:
        return offers
    for waiting in tickets_waiting_for(agent=agent)[: room + CANDIDATES_PER_STEP]:
        ticket = lock_ticket(waiting.pk, skip_locked=True)
        if ticket is None or ticket.status != Ticket.Status.QUEUED:
            continue
        offers.append(_offer_create(ticket=ticket, agent=agent, policy=policy))
        if len(offers) == room:
            break
    return offers


def _offer_for_update(*, offer_id: uuid.UUID) -> tuple[Ticket, Offer]:
    ticket_id = Offer.objects.values_list("ticket_id", flat=True).get(pk=offer_id)
    ticket = lock_ticket(ticket_id)
    return ticket, lock_offer(offer_id)


@transaction.atomic
def offer_accept(*, offer_id: uuid.UUID, agent: Agent) -> Ticket:
    """Accept a pending offer of this agent's; the ticket becomes theirs."""
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
    ticket.agent = agent
    ticket.assigned_at = now
    if ticket.first_assigned_at is None:
        ticket.first_assigned_at = now
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.ASSIGNED,
        kind="assigned",
        agent=agent,
        update_fields=("agent", "assigned_at", "first_assigned_at"),
    )
    webhook_enqueue(ticket=ticket, event="ticket.assigned")
    push_to_agent_on_commit(agent.pk, ticket_assigned_frame(ticket))
    return ticket


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
    return offer


@transaction.atomic
def offer_expire(*, offer_id: uuid.UUID) -> bool:
    """Expire an overdue pending offer (a miss); False when it was answered in time."""
    ticket, offer = _offer_for_update(offer_id=offer_id)
    if offer.status != Offer.Status.PENDING or offer.expires_at > timezone.now():
        return False
    offer.revoke_reason = Offer.RevokeReason.EXPIRED
    _offer_close(ticket=ticket, offer=offer, status=Offer.Status.EXPIRED, kind="expired", detail={})
    push_to_agent_on_commit(offer.agent_id, offer_revoked_frame(offer, Offer.RevokeReason.EXPIRED))
    return True


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
        pending.status = Offer.Status.REVOKED
        pending.revoke_reason = Offer.RevokeReason.CANCELLED
        pending.responded_at = timezone.now()
        pending.save(update_fields=["status", "revoke_reason", "responded_at"])
        push_to_agent_on_commit(
            pending.agent_id, offer_revoked_frame(pending, Offer.RevokeReason.CANCELLED)
        )
        agent_request_drain(agent=pending.agent)
    if ticket.agent_id is not None and ticket.status == Ticket.Status.ASSIGNED:
        push_to_agent_on_commit(ticket.agent_id, ticket_cancelled_frame(ticket))
        agent_request_drain(agent=ticket.agent)


def offers_expire_overdue() -> int:
    """Expire every overdue pending offer (the sweep's net under the per-offer timers)."""
    overdue = Offer.objects.filter(
        status=Offer.Status.PENDING, expires_at__lte=timezone.now()
    ).values_list("pk", flat=True)
    return sum(offer_expire(offer_id=offer_id) for offer_id in list(overdue))


def dispatch_sweep() -> int:
    """Expire overdue offers and drain every routable agent with room; returns offers made.

    Routing is event-driven; this repairs whatever a lost task, worker or Redis message left
    behind, so a lost event costs seconds, not a ticket.
    """
    offers_expire_overdue()
    policy = DispatchPolicy.load()
    # Longest idle first, never-busy (NULL) first on every database, as routing orders them;
    # the agent drained first wins a ticket several could take.
    agent_ids = list(
        agents_routable(now=timezone.now(), policy=policy)
        .order_by(F("idle_since").asc(nulls_first=True), "created_at")
        .values_list("pk", flat=True)
    )
    return sum(len(agent_drain(agent_id=agent_id)) for agent_id in agent_ids)


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
