"""Presence: which agents are at a live socket now, and what becomes of their work once they are
gone (contract section 5).

Presence lives in the database and is computed from timestamps, never from channel-layer
groups: a group cannot be listed, and a disconnect is lost with the server process that had it.

- Each open socket is an `AgentConnection`. It counts while its last heartbeat is within the
  policy's `heartbeat_timeout_seconds`; any number of tabs and devices count at once.
- `Agent.last_seen_at` is the last moment the agent is known to have counted as present: stamped
  on connect, on heartbeat and on disconnect, and, when the sweep removes a connection that went
  stale, at the moment that connection stopped counting (its last heartbeat plus the time-out).
- Once no connection counts, the agent has been gone since the later of `last_seen_at` and its
  newest heartbeat plus the time-out. Gone for `offline_grace_seconds`, it is set offline and its
  pending offers are revoked (`offline`) and routed again; gone for `reconnect_window_seconds`,
  its assigned tickets are requeued. An agent back before then finds its work in `hello`.

The periodic sweep is the only enforcer, so a lost disconnect or a dead server process costs no
more than a stale heartbeat. Every step re-reads its rows under lock, in the canonical order
ticket, offer, agent (see dispatch.services), and re-checks the agent's absence there: a sweep
that overlaps another, or an agent that reconnects meanwhile, changes nothing.
"""

import enum
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from agents.events import agent_presence_board_frame
from agents.locks import lock_agent
from agents.models import Agent, AgentConnection
from agents.push import push_to_agent_on_commit, push_to_board_on_commit
from agents.services import agent_set_status
from tickets.audit import ticket_transition
from tickets.events import ticket_requeued_frame
from tickets.locks import lock_ticket
from tickets.models import Ticket
from tickets.webhooks import webhook_enqueue

from .models import DispatchPolicy, Offer
from .services import agent_request_drain, lock_offer, offer_revoke, ticket_request_routing

logger = logging.getLogger(__name__)

PRESENCE_SWEEP_TASK = "dispatch.presence_sweep"

# Why an assigned ticket was requeued, in its `ticket.requeued` frame and audit event.
REQUEUED_OFFLINE = "offline"

# How long an agent that never connected has been gone: longer than any window.
NEVER_SEEN = datetime.min.replace(tzinfo=UTC)


class Heartbeat(enum.Enum):
    KEPT = "kept"
    # The connection had gone stale and the sweep removed it: frames may have been lost since.
    REVIVED = "revived"
    # The account is no longer an active agent.
    REFUSED = "refused"


class PresenceSweep(NamedTuple):
    stale_connections: int
    agents_offline: int
    tickets_requeued: int


def _heartbeat_timeout(policy: DispatchPolicy) -> timedelta:
    return timedelta(seconds=policy.heartbeat_timeout_seconds)


def _live_connections(*, agent_id: uuid.UUID, now: datetime, policy: DispatchPolicy) -> QuerySet:
    return AgentConnection.objects.filter(
        agent_id=agent_id, last_heartbeat_at__gte=now - _heartbeat_timeout(policy)
    )


def _stamp_last_seen(*, agent_id: uuid.UUID, moment: datetime) -> None:
    # Never backwards: another tab may have been seen later than the moment recorded here.
    Agent.objects.filter(pk=agent_id).filter(
        Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=moment)
    ).update(last_seen_at=moment)


def _push_presence(*, agent_id: uuid.UUID, policy: DispatchPolicy) -> None:
    agent = Agent.objects.only("display_name", "last_seen_at").get(pk=agent_id)
    connections = _live_connections(agent_id=agent_id, now=timezone.now(), policy=policy).count()
    push_to_board_on_commit(agent_presence_board_frame(agent, connections=connections))


def _gone_since(
    *,
    last_seen_at: datetime | None,
    newest_heartbeat: datetime | None,
    now: datetime,
    policy: DispatchPolicy,
) -> datetime | None:
    """When the agent stopped counting as present; None while one of its connections counts."""
    if newest_heartbeat is not None:
        stopped_counting = newest_heartbeat + _heartbeat_timeout(policy)
        if stopped_counting >= now:
            return None
        last_seen_at = max(last_seen_at or stopped_counting, stopped_counting)
    return last_seen_at or NEVER_SEEN


def _gone_for_at_least(*, agent: Agent, seconds: int, policy: DispatchPolicy) -> bool:
    """Whether a locked agent has had no live connection for at least this long."""
    now = timezone.now()
    newest = agent.connections.aggregate(newest=Max("last_heartbeat_at"))["newest"]
    gone_since = _gone_since(
        last_seen_at=agent.last_seen_at, newest_heartbeat=newest, now=now, policy=policy
    )
    return gone_since is not None and gone_since <= now - timedelta(seconds=seconds)


@transaction.atomic
def agent_connect(*, agent: Agent, channel_name: str) -> AgentConnection:
    """Record an open socket, or one that heartbeats again after the sweep removed it as stale;
    an available agent coming back is offered waiting work."""
    # Under the agent's lock, a connect and the sweep's offline step are ordered: either the
    # sweep sees this connection and leaves the agent be, or the agent connects to find itself
    # offline (and its `hello` says so), never half of each.
    agent = lock_agent(agent.pk)
    now = timezone.now()
    connection = AgentConnection.objects.create(
        agent=agent, channel_name=channel_name, last_heartbeat_at=now
    )
    agent.last_seen_at = now
    agent.save(update_fields=["last_seen_at"])
    if agent.status == Agent.Status.AVAILABLE:
        agent_request_drain(agent=agent)
    _push_presence(agent_id=agent.pk, policy=DispatchPolicy.load())
    return connection


# A heartbeat's two writes, by hand: every socket sends one each 20 s, 50 a second with 1,000
# agents and twice that when their timers bunch up, and through the ORM Django built both
# statements anew each time: 0.72-0.79 ms of CPU per heartbeat, against 0.10-0.21 ms.
_STAMP_ACTIVE_AGENT = f"""UPDATE agents_agent SET last_seen_at = %(now)s
WHERE id = %(agent)s AND account_state = %(active)s AND EXISTS (
    SELECT 1 FROM {Agent._meta.get_field("user").related_model._meta.db_table} u
    WHERE u.id = agents_agent.user_id AND u.is_active = %(yes)s)"""
_KEEP_CONNECTION = """UPDATE agents_agentconnection SET last_heartbeat_at = %(now)s
WHERE channel_name = %(channel)s"""
# What an agent holds, for the heartbeat's answer: its pending offers and assigned tickets.
_HOLDING = """SELECT 'offer', o.id FROM dispatch_offer o
WHERE o.agent_id = %(agent)s AND o.status = %(pending)s
UNION ALL
SELECT 'ticket', t.id FROM tickets_ticket t
WHERE t.agent_id = %(agent)s AND t.status = %(assigned)s"""


class Holding(NamedTuple):
    """The ids of an agent's pending offers and assigned tickets, each sorted."""

    offers: list[str]
    tickets: list[str]


def agent_heartbeat(*, agent: Agent, channel_name: str) -> Heartbeat:
    """Keep a socket's presence fresh; a socket whose connection the sweep removed as stale is
    recorded again (REVIVED), and an account that is no longer an active agent is REFUSED."""
    now = db_connection.ops.adapt_datetimefield_value(timezone.now())
    with db_connection.cursor() as cursor:
        cursor.execute(
            _STAMP_ACTIVE_AGENT,
            {
                "now": now,
                "agent": Agent._meta.pk.get_db_prep_value(agent.pk, db_connection),
                "active": Agent.AccountState.ACTIVE.value,
                "yes": True,
            },
        )
        if not cursor.rowcount:
            return Heartbeat.REFUSED
        cursor.execute(_KEEP_CONNECTION, {"now": now, "channel": channel_name})
        if cursor.rowcount:
            return Heartbeat.KEPT
    agent_connect(agent=agent, channel_name=channel_name)
    return Heartbeat.REVIVED


def agent_holding(*, agent: Agent) -> Holding:
    """What the agent holds now, in one statement: a heartbeat's answer names it, so that a
    client that missed a frame (the channel layer delivers at most once) sees that it did."""
    with db_connection.cursor() as cursor:
        cursor.execute(
            _HOLDING,
            {
                "agent": Agent._meta.pk.get_db_prep_value(agent.pk, db_connection),
                "pending": Offer.Status.PENDING.value,
                "assigned": Ticket.Status.ASSIGNED.value,
            },
        )
        rows = cursor.fetchall()
    # SQLite returns a UUID as its 32 hex digits, PostgreSQL as a UUID.
    ids = {"offer": [], "ticket": []}
    for kind, pk in rows:
        ids[kind].append(str(uuid.UUID(str(pk))))
    return Holding(offers=sorted(ids["offer"]), tickets=sorted(ids["ticket"]))


def agent_disconnect(*, agent: Agent, channel_name: str) -> None:
    """Forget a closed socket; the agent is gone from the moment this socket stopped counting."""
    connection = AgentConnection.objects.filter(channel_name=channel_name).first()
    if connection is None:
        # The sweep removed it as stale and already recorded when it stopped counting.
        return
    policy = DispatchPolicy.load()
    # A socket that closes after going stale stopped counting at its last heartbeat plus the
    # time-out, not now: closing it late must not lengthen the agent's grace period.
    stopped_counting = min(
        timezone.now(), connection.last_heartbeat_at + _heartbeat_timeout(policy)
    )
    AgentConnection.objects.filter(pk=connection.pk).delete()
    _stamp_last_seen(agent_id=agent.pk, moment=stopped_counting)
    _push_presence(agent_id=agent.pk, policy=policy)


def connections_sweep_stale(*, now: datetime, policy: DispatchPolicy) -> int:
    """Remove the connections that stopped heartbeating (a frozen tab, a lost network, a server
    process that died without its disconnects); returns how many agents had one."""
    timeout = _heartbeat_timeout(policy)
    stale = AgentConnection.objects.filter(last_heartbeat_at__lt=now - timeout)
    newest_stale = list(
        stale.values("agent")
        .annotate(newest=Max("last_heartbeat_at"))
        .order_by("agent")
        .values_list("agent", "newest")
    )
    for agent_id, newest in newest_stale:
        # Recorded before the rows go, so how long the agent has been gone survives them.
        _stamp_last_seen(agent_id=agent_id, moment=newest + timeout)
        stale.filter(agent_id=agent_id).delete()
        _push_presence(agent_id=agent_id, policy=policy)
    return len(newest_stale)


def _offer_revoke_offline(
    *, ticket: Ticket, offer: Offer, agent: Agent, by: AbstractBaseUser | None = None
) -> None:
    offer_revoke(offer=offer, reason=Offer.RevokeReason.OFFLINE)
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.QUEUED,
        kind="revoked",
        agent=agent,
        actor=by,
        detail={"reason": Offer.RevokeReason.OFFLINE},
    )
    ticket_request_routing(ticket=ticket)


@transaction.atomic
def agent_take_offline(*, agent_id: uuid.UUID) -> bool:
    """Set an agent gone for the grace period offline and route its pending offers to others;
    False when it is back (or not gone long enough)."""
    pending = list(
        Offer.objects.filter(agent_id=agent_id, status=Offer.Status.PENDING)
        .order_by("ticket_id")
        .values_list("pk", "ticket_id")
    )
    # In ticket order, so that two overlapping sweeps never wait on each other's tickets.
    tickets = {ticket_id: lock_ticket(ticket_id) for _, ticket_id in pending}
    offers = [lock_offer(offer_id) for offer_id, _ in pending]
    agent = lock_agent(agent_id)
    policy = DispatchPolicy.load()
    if agent is None or not _gone_for_at_least(
        agent=agent, seconds=policy.offline_grace_seconds, policy=policy
    ):
        return False
    for offer in offers:
        if offer.status == Offer.Status.PENDING:
            _offer_revoke_offline(ticket=tickets[offer.ticket_id], offer=offer, agent=agent)
    if agent.status != Agent.Status.OFFLINE:
        agent_set_status(agent=agent, status=Agent.Status.OFFLINE)
    return True


@transaction.atomic
def ticket_requeue_abandoned(*, ticket_id: uuid.UUID) -> bool:
    """Requeue an assigned ticket whose agent has been gone for the reconnect window: the agent
    (should it come back) and the bot are told, and the ticket is routed again. False when the
    agent is back or the ticket moved on."""
    ticket = lock_ticket(ticket_id)
    if ticket is None or ticket.status != Ticket.Status.ASSIGNED or ticket.agent_id is None:
        return False
    held_id = (
        Offer.objects.filter(
            ticket=ticket,
            agent_id=ticket.agent_id,
            status=Offer.Status.ACCEPTED,
            released_at__isnull=True,
        )
        .values_list("pk", flat=True)
        .first()
    )
    held = lock_offer(held_id) if held_id is not None else None
    agent = lock_agent(ticket.agent_id)
    policy = DispatchPolicy.load()
    if not _gone_for_at_least(agent=agent, seconds=policy.reconnect_window_seconds, policy=policy):
        return False
    if held is not None:
        # Taken away, not given back: the agent may get this ticket again when it returns.
        held.released_at = timezone.now()
        held.revoke_reason = Offer.RevokeReason.OFFLINE
        held.save(update_fields=["released_at", "revoke_reason"])
    ticket.agent = None
    ticket_transition(
        ticket=ticket,
        to_status=Ticket.Status.QUEUED,
        kind="requeued",
        agent=agent,
        detail={"reason": REQUEUED_OFFLINE},
        update_fields=("agent",),
    )
    webhook_enqueue(ticket=ticket, event="ticket.requeued")
    push_to_agent_on_commit(agent.pk, ticket_requeued_frame(ticket, reason=REQUEUED_OFFLINE))
    ticket_request_routing(ticket=ticket)
    return True


def agent_set_offline(*, agent: Agent, by: AbstractBaseUser) -> int:
    """A coordinator sets an agent offline now: its tabs and the board hear the new status, and
    its pending offers are revoked (`offline`) and routed to others, as when the sweep takes an
    absent agent offline; its assigned tickets stay with it. Returns the offers revoked.

    Not one transaction, and meant to be called outside one: once the status has committed,
    routing gives the agent no new offer (it re-checks under the agent's lock), so the pending
    ones can be revoked one by one in the canonical lock order (ticket, offer, agent).
    """
    agent_set_status(agent=agent, status=Agent.Status.OFFLINE)
    pending = Offer.objects.filter(agent=agent, status=Offer.Status.PENDING).order_by("ticket_id")
    revoked = 0
    for offer_id, ticket_id in list(pending.values_list("pk", "ticket_id")):
        with transaction.atomic():
            ticket = lock_ticket(ticket_id)
            offer = lock_offer(offer_id)
            if offer.status != Offer.Status.PENDING:
                continue
            _offer_revoke_offline(ticket=ticket, offer=offer, agent=lock_agent(agent.pk), by=by)
            revoked += 1
    return revoked


def _agents_gone_with_something_to_do(*, now: datetime, policy: DispatchPolicy) -> QuerySet:
    """Agents with no live connection that are not yet offline or still hold work."""
    live = AgentConnection.objects.filter(
        agent=OuterRef("pk"), last_heartbeat_at__gte=now - _heartbeat_timeout(policy)
    )
    pending = Offer.objects.filter(agent=OuterRef("pk"), status=Offer.Status.PENDING)
    assigned = Ticket.objects.filter(agent=OuterRef("pk"), status=Ticket.Status.ASSIGNED)
    newest = AgentConnection.objects.filter(agent=OuterRef("pk")).order_by("-last_heartbeat_at")
    return (
        Agent.objects.exclude(Exists(live))
        .annotate(has_pending=Exists(pending), has_assigned=Exists(assigned))
        .filter(~Q(status=Agent.Status.OFFLINE) | Q(has_pending=True) | Q(has_assigned=True))
        .annotate(newest_heartbeat=Subquery(newest.values("last_heartbeat_at")[:1]))
    )


def presence_sweep() -> PresenceSweep:
    """Enforce presence: remove stale connections, take agents gone for the grace period
    offline (their pending offers go to others) and requeue the assigned tickets of agents gone
    for the reconnect window."""
    policy = DispatchPolicy.load()
    now = timezone.now()
    stale = connections_sweep_stale(now=now, policy=policy)
    gone = [
        (
            _gone_since(
                last_seen_at=agent.last_seen_at,
                newest_heartbeat=agent.newest_heartbeat,
                now=now,
                policy=policy,
            ),
            agent,
        )
        for agent in _agents_gone_with_something_to_do(now=now, policy=policy)
    ]
    offline = requeued = 0
    # The longest gone first: what happens to one agent never waits behind one gone later.
    for since, agent in sorted(gone, key=lambda pair: (pair[0], pair[1].pk)):
        if since <= now - timedelta(seconds=policy.offline_grace_seconds) and (
            agent.status != Agent.Status.OFFLINE or agent.has_pending
        ):
            offline += agent_take_offline(agent_id=agent.pk)
        if since <= now - timedelta(seconds=policy.reconnect_window_seconds) and agent.has_assigned:
            for ticket_id in Ticket.objects.filter(
                agent=agent, status=Ticket.Status.ASSIGNED
            ).values_list("pk", flat=True):
                requeued += ticket_requeue_abandoned(ticket_id=ticket_id)
    if stale or offline or requeued:
        logger.info(
            "Presence: %d agents had stale connections, %d went offline, %d tickets requeued",
            stale,
            offline,
            requeued,
        )
    return PresenceSweep(stale, offline, requeued)
