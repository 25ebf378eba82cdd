"""Presence (contract section 5): an agent counts as present while one of its connections
heartbeats; gone for the grace period it is offline and its pending offers go to others; gone
for the reconnect window its assigned tickets are requeued.

The sweep is the one beat runs, called in process with Celery eager; time passing is written
into the timestamps presence is computed from (the last heartbeat, the last time seen)."""

import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone

from agents.models import Agent, AgentConnection
from dispatch.models import DispatchPolicy, Offer
from dispatch.presence import PresenceSweep, agent_connect, agent_holding, presence_sweep
from dispatch.services import OfferNotPending, agent_snapshot, offer_accept, ticket_route
from tests.factories import TicketFactory, UserFactory
from tickets.models import Ticket, WebhookDelivery

from .test_consumer import TIMEOUT, board, connected, token_header

pytestmark = pytest.mark.django_db(transaction=True)

NOTHING = PresenceSweep(stale_connections=0, agents_offline=0, tickets_requeued=0)


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def leave(agent: Agent, *, seconds_ago: float) -> None:
    """The agent's last socket closed this long ago."""
    AgentConnection.objects.filter(agent=agent).delete()
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=ago(seconds_ago))


def stop_heartbeating(agent: Agent, *, seconds_ago: float) -> None:
    """The agent's sockets stay open, but the last heartbeat came this long ago."""
    AgentConnection.objects.filter(agent=agent).update(last_heartbeat_at=ago(seconds_ago))
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=ago(seconds_ago))


def escalate(ticket_factory, **kwargs) -> Ticket:
    """A queued ticket, routed at once (as on escalation)."""
    ticket = ticket_factory(**kwargs)
    ticket_route(ticket_id=ticket.pk)
    ticket.refresh_from_db()
    return ticket


def assign(ticket_factory, agent: Agent, **kwargs) -> Ticket:
    ticket = ticket_factory(**kwargs)
    offer_accept(offer_id=ticket_route(ticket_id=ticket.pk).pk, agent=agent)
    ticket.refresh_from_db()
    return ticket


def events(ticket: Ticket) -> list[tuple]:
    return [
        (event.kind, event.from_status, event.to_status, event.agent_id, event.detail)
        for event in ticket.events.order_by("occurred_at", "id")
    ]


def offers(ticket: Ticket) -> list[tuple]:
    return [
        (offer.agent_id, offer.status, offer.revoke_reason)
        for offer in Offer.objects.filter(ticket=ticket).order_by("created_at")
    ]


def status_of(agent: Agent) -> str:
    return Agent.objects.values_list("status", flat=True).get(pk=agent.pk)


# -- the grace period -------------------------------------------------------------------------


def test_an_agent_gone_for_less_than_the_grace_period_keeps_its_status_and_offers(
    agent_factory, ticket_factory
):
    # given: an agent with a pending offer whose last socket closed 29 s ago (grace: 30 s)
    agent = agent_factory(online=True)
    ticket = escalate(ticket_factory)
    leave(agent, seconds_ago=29)

    # when
    swept = presence_sweep()

    # then
    assert swept == NOTHING
    assert status_of(agent) == Agent.Status.AVAILABLE
    assert offers(ticket) == [(agent.pk, Offer.Status.PENDING, "")]


def test_an_agent_gone_past_the_grace_period_goes_offline_and_its_offers_go_to_others(
    agent_factory, ticket_factory
):
    # given: an agent with a pending offer whose last socket closed 31 s ago, and another agent
    # who came online since
    gone = agent_factory(online=True)
    ticket = escalate(ticket_factory)
    other = agent_factory(online=True)
    leave(gone, seconds_ago=31)

    # when
    swept = presence_sweep()

    # then: offline, the offer revoked as `offline`, and the ticket offered to the other
    assert swept == PresenceSweep(stale_connections=0, agents_offline=1, tickets_requeued=0)
    assert status_of(gone) == Agent.Status.OFFLINE
    assert offers(ticket) == [
        (gone.pk, Offer.Status.REVOKED, "offline"),
        (other.pk, Offer.Status.PENDING, ""),
    ]
    assert [kind_and_agent[:4] for kind_and_agent in events(ticket)] == [
        ("offered", "queued", "offered", gone.pk),
        ("revoked", "offered", "queued", gone.pk),
        ("offered", "queued", "offered", other.pk),
    ]
    assert events(ticket)[1][4] == {"reason": "offline"}


def test_an_agent_offline_by_choice_loses_its_pending_offers_once_gone(
    agent_factory, ticket_factory
):
    # given: an agent who set itself offline with an offer still pending, then left
    agent = agent_factory(online=True)
    ticket = escalate(ticket_factory)
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.OFFLINE)
    leave(agent, seconds_ago=31)

    # when
    swept = presence_sweep()

    # then
    assert swept == PresenceSweep(stale_connections=0, agents_offline=1, tickets_requeued=0)
    assert status_of(agent) == Agent.Status.OFFLINE
    assert offers(ticket) == [(agent.pk, Offer.Status.REVOKED, "offline")]
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.QUEUED


def test_an_available_agent_that_never_connected_is_set_offline(agent_factory):
    # given: available, but no socket was ever open
    agent = agent_factory(status=Agent.Status.AVAILABLE)

    # when
    swept = presence_sweep()

    # then
    assert swept == PresenceSweep(stale_connections=0, agents_offline=1, tickets_requeued=0)
    assert status_of(agent) == Agent.Status.OFFLINE


def test_an_offline_agent_with_nothing_to_do_is_left_alone(agent_factory):
    # given
    agent = agent_factory(status=Agent.Status.OFFLINE)
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=ago(86400))

    # when
    swept = presence_sweep()

    # then
    assert swept == NOTHING
    assert status_of(agent) == Agent.Status.OFFLINE


# -- heartbeats and tabs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("silent_for", "status", "swept"),
    [
        (89, Agent.Status.AVAILABLE, PresenceSweep(1, 0, 0)),
        (91, Agent.Status.OFFLINE, PresenceSweep(1, 1, 0)),
    ],
    ids=["stale for 29 s", "stale for 31 s"],
)
def test_a_silent_connection_counts_until_the_time_out_then_the_grace_period_runs(
    agent_factory, silent_for, status, swept
):
    # given: the agent's only socket is open, but sent its last heartbeat this long ago
    # (time-out 60 s, then 30 s of grace)
    agent = agent_factory(online=True)
    stop_heartbeating(agent, seconds_ago=silent_for)
    last_heartbeat = AgentConnection.objects.get(agent=agent).last_heartbeat_at

    # when
    result = presence_sweep()

    # then: the stale connection is gone, and the agent was last seen when it stopped counting
    assert result == swept
    assert status_of(agent) == status
    assert AgentConnection.objects.filter(agent=agent).count() == 0
    agent.refresh_from_db()
    assert agent.last_seen_at == last_heartbeat + timedelta(seconds=60)


def test_a_stale_tab_is_removed_and_a_live_tab_keeps_the_agent(agent_factory, ticket_factory):
    # given: one tab stopped heartbeating 200 s ago, the other heartbeats
    agent = agent_factory(online=True)
    ticket = escalate(ticket_factory)
    live = AgentConnection.objects.get(agent=agent)
    AgentConnection.objects.create(
        agent=agent, channel_name="frozen-tab", last_heartbeat_at=ago(200)
    )

    # when
    swept = presence_sweep()

    # then
    assert swept == PresenceSweep(stale_connections=1, agents_offline=0, tickets_requeued=0)
    assert status_of(agent) == Agent.Status.AVAILABLE
    assert list(AgentConnection.objects.values_list("pk", flat=True)) == [live.pk]
    assert offers(ticket) == [(agent.pk, Offer.Status.PENDING, "")]


# -- the reconnect window ---------------------------------------------------------------------


def test_assigned_tickets_wait_for_the_reconnect_window(agent_factory, ticket_factory):
    # given: an agent gone for 119 s (reconnect window: 120 s) with an assigned ticket
    agent = agent_factory(online=True)
    ticket = assign(ticket_factory, agent)
    leave(agent, seconds_ago=119)

    # when
    swept = presence_sweep()

    # then: offline (past the grace period), but the ticket is still the agent's
    assert swept == PresenceSweep(stale_connections=0, agents_offline=1, tickets_requeued=0)
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent_id) == (Ticket.Status.ASSIGNED, agent.pk)


def test_assigned_tickets_of_an_agent_gone_past_the_reconnect_window_are_requeued(
    agent_factory, ticket_factory, bot_factory, bot_receiver
):
    # given: an agent gone for 121 s with an assigned ticket of a bot with a webhook, and
    # another agent who can take it
    gone = agent_factory(online=True)
    bot = bot_factory()
    ticket = assign(ticket_factory, gone, integration=bot, callback_url=bot_receiver.url)
    other = agent_factory(online=True)
    leave(gone, seconds_ago=121)

    # when
    swept = presence_sweep()

    # then: requeued (the agent's hold released) and offered to the other agent
    assert swept == PresenceSweep(stale_connections=0, agents_offline=1, tickets_requeued=1)
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent_id) == (Ticket.Status.OFFERED, None)
    held = Offer.objects.get(ticket=ticket, agent=gone)
    assert (held.status, held.released_at is not None) == (Offer.Status.ACCEPTED, True)
    assert Offer.objects.get(ticket=ticket, status=Offer.Status.PENDING).agent_id == other.pk
    assert events(ticket)[-2:] == [
        ("requeued", "assigned", "queued", gone.pk, {"reason": "offline"}),
        ("offered", "queued", "offered", other.pk, events(ticket)[-1][4]),
    ]

    # and the bot heard of it
    requeued = WebhookDelivery.objects.get(ticket=ticket, event="ticket.requeued")
    assert (requeued.sequence, requeued.state) == (2, WebhookDelivery.State.DELIVERED)
    assert bot_receiver.events() == ["ticket.assigned", "ticket.requeued"]
    body = bot_receiver.received[1].json
    assert (body["ticket"]["status"], body["ticket"]["agent"]) == ("queued", None)


def test_a_ticket_requeued_because_its_agent_dropped_may_return_to_that_agent(
    agent_factory, ticket_factory
):
    # given: the only agent who can take a ticket was gone past the reconnect window
    agent = agent_factory(online=True)
    ticket = assign(ticket_factory, agent)
    leave(agent, seconds_ago=121)
    presence_sweep()
    held = Offer.objects.get(ticket=ticket, agent=agent)
    assert (held.status, held.revoke_reason) == (Offer.Status.ACCEPTED, "offline")

    # when it comes back and is available again
    agent_connect(agent=agent, channel_name="returning-tab")
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.AVAILABLE)
    offer = ticket_route(ticket_id=ticket.pk)

    # then the ticket is offered to it again: losing the network is not declining the ticket
    assert offer is not None
    assert offer.agent_id == agent.pk


def test_an_agent_back_inside_the_reconnect_window_keeps_its_tickets(agent_factory, ticket_factory):
    # given: an agent that was gone for 100 s and reconnected just now
    agent = agent_factory(online=True)
    ticket = assign(ticket_factory, agent)
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=ago(100))
    AgentConnection.objects.filter(agent=agent).update(last_heartbeat_at=timezone.now())

    # when
    swept = presence_sweep()

    # then
    assert swept == NOTHING
    ticket.refresh_from_db()
    assert (ticket.status, ticket.agent_id) == (Ticket.Status.ASSIGNED, agent.pk)
    assert status_of(agent) == Agent.Status.AVAILABLE


@pytest.mark.parametrize(
    ("gone_for", "status", "ticket_status"),
    [(4, "available", "assigned"), (6, "offline", "assigned"), (11, "offline", "queued")],
)
def test_the_grace_period_and_the_reconnect_window_are_the_policys(
    agent_factory, ticket_factory, gone_for, status, ticket_status
):
    # given: a policy of 5 s grace and a 10 s reconnect window
    DispatchPolicy.objects.update_or_create(
        pk=1, defaults={"offline_grace_seconds": 5, "reconnect_window_seconds": 10}
    )
    agent = agent_factory(online=True)
    ticket = assign(ticket_factory, agent)
    leave(agent, seconds_ago=gone_for)

    # when
    presence_sweep()

    # then
    assert status_of(agent) == status
    assert Ticket.objects.get(pk=ticket.pk).status == ticket_status


def test_a_second_sweep_changes_nothing(agent_factory, ticket_factory):
    # given: a sweep already took a gone agent offline and requeued its ticket
    agent = agent_factory(online=True)
    ticket = assign(ticket_factory, agent)
    offered = escalate(ticket_factory)
    leave(agent, seconds_ago=500)
    assert presence_sweep() == PresenceSweep(0, 1, 1)
    trail = events(ticket), events(offered)

    # when
    swept = presence_sweep()

    # then
    assert swept == NOTHING
    assert (events(ticket), events(offered)) == trail


# -- what the agent's sockets and the board hear ----------------------------------------------


@pytest.mark.asyncio
async def test_a_tab_that_stopped_heartbeating_hears_its_offers_revoked_status_and_requeue(
    agent_factory, ticket_factory
):
    # given: an agent's only tab, open but silent for 200 s, with a pending offer and an
    # assigned ticket whose frames it already read
    agent = await database_sync_to_async(agent_factory)(status=Agent.Status.AVAILABLE)
    header = await database_sync_to_async(token_header)(agent.user)
    socket, _ = await connected(header)

    @database_sync_to_async
    def work():
        return assign(ticket_factory, agent), escalate(ticket_factory)

    assigned, offered = await work()
    for _ in range(3):  # offer.created, ticket.assigned, offer.created
        await socket.receive_json_from(timeout=TIMEOUT)
    await database_sync_to_async(stop_heartbeating)(agent, seconds_ago=200)
    offer = await database_sync_to_async(Offer.objects.get)(ticket=offered)

    # when
    await database_sync_to_async(presence_sweep)()

    # then
    assert [await socket.receive_json_from(timeout=TIMEOUT) for _ in range(3)] == [
        {"type": "offer.revoked", "offer_id": str(offer.pk), "reason": "offline"},
        {"type": "status", "status": "offline"},
        {"type": "ticket.requeued", "ticket_id": str(assigned.pk), "reason": "offline"},
    ]
    await socket.disconnect()


@pytest.mark.asyncio
async def test_the_board_hears_when_a_stale_connection_stops_counting(agent_factory):
    # given: a coordinator watching, and an agent whose tab stopped heartbeating 70 s ago
    @database_sync_to_async
    def given():
        staff = UserFactory(is_staff=True)
        agent = agent_factory(online=True, display_name="Maja")
        stop_heartbeating(agent, seconds_ago=70)
        return token_header(staff), agent

    header, agent = await given()
    watcher = board(header)
    assert (await watcher.connect(timeout=TIMEOUT))[0] is True
    last_heartbeat = await database_sync_to_async(
        lambda: AgentConnection.objects.get(agent=agent).last_heartbeat_at
    )()

    # when
    await database_sync_to_async(presence_sweep)()

    # then
    assert await watcher.receive_json_from(timeout=TIMEOUT) == {
        "type": "agent.presence",
        "agent_id": str(agent.pk),
        "display_name": "Maja",
        "connections": 0,
        "last_seen_at": (last_heartbeat + timedelta(seconds=60)).isoformat(),
    }
    await watcher.disconnect()


# -- races ------------------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.parametrize("round_", range(10))
def test_an_accept_racing_the_sweep_either_wins_or_loses_whole(
    agent_factory, ticket_factory, round_
):
    # given: an agent gone past the grace period, its offer still pending, accepting it over
    # REST at the instant the sweep takes it offline
    agent = agent_factory(online=True)
    ticket = escalate(ticket_factory)
    offer = Offer.objects.get(ticket=ticket)
    leave(agent, seconds_ago=31)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def run(name: str, work) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes[name] = work()
        except OfferNotPending as exc:
            outcomes[name] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=("sweep", presence_sweep)),
        threading.Thread(
            target=run, args=("accept", lambda: offer_accept(offer_id=offer.pk, agent=agent))
        ),
    ]

    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then: the agent is offline either way, and the offer was accepted or revoked, never both
    offer.refresh_from_db()
    ticket.refresh_from_db()
    assert status_of(agent) == Agent.Status.OFFLINE
    if isinstance(outcomes["accept"], OfferNotPending):
        assert (offer.status, offer.revoke_reason) == (Offer.Status.REVOKED, "offline")
        assert (ticket.status, ticket.agent_id) == (Ticket.Status.QUEUED, None)
    else:
        assert offer.status == Offer.Status.ACCEPTED
        assert (ticket.status, ticket.agent_id) == (Ticket.Status.ASSIGNED, agent.pk)


@pytest.mark.postgres_only
@pytest.mark.parametrize("round_", range(10))
def test_a_reconnect_racing_the_sweep_gets_a_hello_that_matches_what_the_sweep_left(
    agent_factory, ticket_factory, round_
):
    # given: an agent gone past the grace period with an offer pending, reconnecting at the
    # instant the sweep would take it offline
    agent = agent_factory(online=True)
    ticket = escalate(ticket_factory)
    offer = Offer.objects.get(ticket=ticket)
    leave(agent, seconds_ago=31)
    barrier = threading.Barrier(2)
    hello: dict = {}

    def reconnect() -> None:
        agent_connect(agent=agent, channel_name="racing-tab")
        hello.update(agent_snapshot(agent=Agent.objects.select_related("user").get(pk=agent.pk)))

    def run(work) -> None:
        try:
            barrier.wait(timeout=30)
            work()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(work,)) for work in (presence_sweep, reconnect)]

    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then: either the sweep saw the connection and left everything, or it went first and the
    # hello tells the agent so; never a hello that contradicts the database
    offer.refresh_from_db()
    if status_of(agent) == Agent.Status.OFFLINE:
        assert offer.status == Offer.Status.REVOKED
        assert (hello["agent"]["status"], hello["offers"]) == ("offline", [])
    else:
        assert offer.status == Offer.Status.PENDING
        assert hello["agent"]["status"] == "available"
        assert [o["id"] for o in hello["offers"]] == [str(offer.pk)]


def test_what_a_heartbeat_names_is_what_hello_carries(agent_factory):
    # given: an agent with two pending offers, an assigned ticket, and offers and tickets that
    # are not its own or no longer pending or assigned
    agent = agent_factory(online=True, capacity=5)
    other = agent_factory(online=True)
    expires_at = timezone.now() + timedelta(seconds=30)
    pending = [
        Offer.objects.create(ticket=TicketFactory(), agent=agent, expires_at=expires_at)
        for _ in range(2)
    ]
    Offer.objects.create(
        ticket=TicketFactory(),
        agent=agent,
        expires_at=expires_at,
        status=Offer.Status.DECLINED,
    )
    Offer.objects.create(ticket=TicketFactory(), agent=other, expires_at=expires_at)
    assigned = TicketFactory(status=Ticket.Status.ASSIGNED, agent=agent)
    TicketFactory(status=Ticket.Status.RESOLVED, agent=agent)
    TicketFactory(status=Ticket.Status.ASSIGNED, agent=other)

    # when
    holding = agent_holding(agent=agent)

    # then
    hello = agent_snapshot(agent=agent)
    assert holding.offers == sorted(offer["id"] for offer in hello["offers"])
    assert holding.tickets == sorted(ticket["id"] for ticket in hello["tickets"])
    assert holding.offers == sorted(str(offer.pk) for offer in pending)
    assert holding.tickets == [str(assigned.pk)]
