"""Presence and the agent websocket on the real platform: an ASGI server, a Celery worker and
beat (the sweeps every second) as processes on the test database and Redis. Agents speak the
websocket as token clients; the bot's webhook endpoint is a real HTTP server.

The policy's grace period and reconnect window are set to a few seconds in each test, so that
what takes minutes in production is seen in seconds; nothing here waits on a clock, only on
frames, rows and webhooks."""

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from knox.models import AuthToken
from websockets.sync.client import ClientConnection, connect

from agents.models import Agent, AgentConnection
from dispatch.models import DispatchPolicy, Offer
from tests.live import wait_for
from tickets.models import Ticket

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

FRAME_TIMEOUT_SECONDS = 15.0


def set_policy(**windows: int) -> None:
    DispatchPolicy.objects.update_or_create(pk=1, defaults=windows)


class Tab:
    """One browser tab of an agent: a token client of /ws/agent/."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    def send(self, frame: dict) -> None:
        self.socket.send(json.dumps(frame))

    def next(self) -> dict:
        return json.loads(self.socket.recv(timeout=FRAME_TIMEOUT_SECONDS))

    def next_of(self, kind: str) -> dict:
        """The next frame of this type; the frames before it are of other types, expected."""
        while (frame := self.next())["type"] != kind:
            pass
        return frame

    def heartbeat(self) -> None:
        self.send({"type": "heartbeat"})
        assert set(self.next_of("heartbeat.ack")) == {"type", "offers", "tickets"}

    def close(self) -> None:
        self.socket.close()


@contextmanager
def opened(platform, token: str) -> Iterator[Tab]:
    with connect(
        f"{platform.ws_url}/ws/agent/",
        additional_headers={"Authorization": f"Token {token}"},
        open_timeout=10,
    ) as socket:
        yield Tab(socket)


def token_of(agent: Agent) -> str:
    """The agent's API token (as POST /api/v1/auth/token/ hands it out; made here directly, so
    these tests stay clear of the log-in rate limit)."""
    return AuthToken.objects.create(user=agent.user)[1]


def go_available(tab: Tab) -> dict:
    """Read the hello of a fresh tab and set the agent available; returns the hello."""
    hello = tab.next()
    assert hello["type"] == "hello"
    tab.send({"type": "status.set", "status": "available"})
    assert tab.next() == {"type": "status", "status": "available"}
    return hello


def escalate(platform, bot, external_id: str, *, language: str = "sv", **fields) -> str:
    response = httpx.post(
        f"{platform.url}/api/v1/escalations/",
        headers={"Authorization": f"Bearer {bot.api_key}"},
        json={"external_id": external_id, "language": language, "customer": {"id": "c"}} | fields,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def offered(tab: Tab, ticket_id: str) -> dict:
    frame = tab.next_of("offer.created")
    assert frame["offer"]["ticket"]["id"] == ticket_id
    return frame["offer"]


def accept(tab: Tab, offer: dict) -> dict:
    tab.send({"type": "offer.accept", "offer_id": offer["id"]})
    frame = tab.next_of("ticket.assigned")
    assert frame["ticket"]["id"] == offer["ticket"]["id"]
    return frame["ticket"]


def status_of(agent: Agent) -> str:
    return Agent.objects.values_list("status", flat=True).get(pk=agent.pk)


def ticket_state(ticket_id: str) -> tuple:
    return Ticket.objects.values_list("status", "agent_id").get(pk=ticket_id)


def test_two_tabs_of_one_agent_hear_the_same_and_closing_one_keeps_the_agent(
    live_platform, agent_factory, bot
):
    # given an agent with two tabs open, and another agent who will leave as a yardstick
    maja = agent_factory(languages=["sv"])
    yardstick = agent_factory(languages=["de"])
    token = token_of(maja)
    with (
        opened(live_platform, token) as first,
        opened(live_platform, token) as second,
        opened(live_platform, token_of(yardstick)) as yardstick_tab,
    ):
        assert second.next()["type"] == "hello"
        go_available(yardstick_tab)

        # when the first tab sets the agent available
        go_available(first)

        # then the second tab hears it too
        assert second.next() == {"type": "status", "status": "available"}

        # when a conversation is escalated, and the second tab accepts it
        ticket_id = escalate(live_platform, bot, "conv-tabs")
        offer = offered(first, ticket_id)
        assert offered(second, ticket_id) == offer
        ticket = accept(second, offer)

        # then both tabs hold the ticket
        assert first.next_of("ticket.assigned") == {"type": "ticket.assigned", "ticket": ticket}

        # when the agent answers over REST
        reply = httpx.post(
            f"{live_platform.url}/api/v1/agent/tickets/{ticket_id}/messages/",
            headers={"Authorization": f"Token {token}"},
            json={"text": "Hej! Jag tittar på det."},
            timeout=10,
        )

        # then both tabs show the reply
        assert reply.status_code == 201, reply.text
        for tab in (first, second):
            assert tab.next() == {
                "type": "ticket.message",
                "ticket_id": ticket_id,
                "message": reply.json(),
            }

        # when the first tab closes, with no grace at all, and a sweep has run since (the
        # yardstick, which left after it, is offline)
        set_policy(offline_grace_seconds=0)
        first.close()
        yardstick_tab.close()
        wait_for(lambda: status_of(yardstick) == "offline", what="the yardstick offline")

        # then the agent is still there, and the next conversation reaches the open tab
        assert status_of(maja) == "available"
        assert AgentConnection.objects.filter(agent=maja).count() == 1
        second_ticket = escalate(live_platform, bot, "conv-tabs-2")
        offered(second, second_ticket)


def test_a_tab_that_stops_heartbeating_is_taken_offline_and_its_ticket_requeued(
    live_platform, agent_factory, bot_factory, bot_receiver
):
    # given a 5 s heartbeat time-out, 1 s of grace and a 2 s reconnect window, and a tab
    # holding an assigned ticket and a pending offer (heartbeating while it got them)
    set_policy(heartbeat_timeout_seconds=5, offline_grace_seconds=1, reconnect_window_seconds=2)
    maja = agent_factory(languages=["sv"])
    bot = bot_factory()
    with opened(live_platform, token_of(maja)) as tab:
        go_available(tab)
        tab.heartbeat()
        assigned_id = escalate(live_platform, bot, "conv-1", callback_url=bot_receiver.url)
        accept(tab, offered(tab, assigned_id))
        tab.heartbeat()
        offered_id = escalate(live_platform, bot, "conv-2")
        offer = offered(tab, offered_id)

        # when the tab stays open but sends no more heartbeats

        # then, over the still open socket: offline with its offer revoked, then the ticket
        # requeued
        assert [tab.next(), tab.next(), tab.next()] == [
            {"type": "offer.revoked", "offer_id": offer["id"], "reason": "offline"},
            {"type": "status", "status": "offline"},
            {"type": "ticket.requeued", "ticket_id": assigned_id, "reason": "offline"},
        ]
        assert ticket_state(assigned_id) == ("queued", None)
        assert ticket_state(offered_id) == ("queued", None)
        wait_for(
            lambda: bot_receiver.events() == ["ticket.assigned", "ticket.requeued"],
            what="the ticket.requeued webhook",
        )

        # when the tab wakes up and heartbeats again
        tab.send({"type": "heartbeat"})

        # then it is resynced: offline, nothing held
        assert tab.next() == {
            "type": "hello",
            "agent": {
                "username": maja.user.username,
                "display_name": maja.display_name,
                "status": "offline",
                "languages": ["sv"],
                "skills": [],
                "capacity": 2,
                "active_tickets": 0,
            },
            "offers": [],
            "tickets": [],
        }
        assert tab.next() == {"type": "heartbeat.ack", "offers": [], "tickets": []}


def test_a_disconnect_inside_the_grace_period_and_the_reconnect_window_loses_nothing(
    live_platform, agent_factory, bot
):
    # given 2 s of grace and a 3 s reconnect window; an agent holding a ticket and an offer, and
    # a yardstick agent holding a ticket too
    set_policy(offline_grace_seconds=2, reconnect_window_seconds=3)
    maja = agent_factory(languages=["sv"])
    yardstick = agent_factory(languages=["de"])
    token = token_of(maja)
    with (
        opened(live_platform, token) as tab,
        opened(live_platform, token_of(yardstick)) as yardstick_tab,
    ):
        go_available(tab)
        go_available(yardstick_tab)
        assigned_id = escalate(live_platform, bot, "conv-1")
        ticket = accept(tab, offered(tab, assigned_id))
        offer = offered(tab, escalate(live_platform, bot, "conv-2"))
        yardstick_ticket = escalate(live_platform, bot, "conv-de", language="de")
        accept(yardstick_tab, offered(yardstick_tab, yardstick_ticket))

        # when the agent's connection drops and comes back at once, while the yardstick's
        # drops for good just after
        tab.close()
        yardstick_tab.close()
        with opened(live_platform, token) as back:
            hello = back.next()

            # then the agent finds everything as it was
            assert hello["agent"]["status"] == "available"
            assert [o["id"] for o in hello["offers"]] == [offer["id"]]
            assert [t["id"] for t in hello["tickets"]] == [ticket["id"]]

            # and so it stays past the grace period and the reconnect window (the yardstick,
            # gone a moment later, has lost its ticket by then)
            wait_for(
                lambda: ticket_state(yardstick_ticket)[1] is None,
                what="the yardstick's ticket requeued",
            )
            assert status_of(yardstick) == "offline"
            assert status_of(maja) == "available"
            assert ticket_state(assigned_id) == ("assigned", maja.pk)
            assert Offer.objects.get(pk=offer["id"]).status == Offer.Status.PENDING


def test_a_disconnect_beyond_the_grace_period_and_the_reconnect_window(
    live_platform, agent_factory, bot_factory, bot_receiver
):
    # given 1 s of grace and a 5 s reconnect window; an agent holding a ticket and an offer
    set_policy(offline_grace_seconds=1, reconnect_window_seconds=5)
    maja = agent_factory(languages=["sv"])
    liam = agent_factory(languages=["sv"])
    bot = bot_factory()
    token = token_of(maja)
    with opened(live_platform, token) as tab:
        go_available(tab)
        assigned_id = escalate(live_platform, bot, "conv-1", callback_url=bot_receiver.url)
        ticket = accept(tab, offered(tab, assigned_id))
        offered_id = escalate(live_platform, bot, "conv-2")
        offered(tab, offered_id)
    with opened(live_platform, token_of(liam)) as other:
        # (another agent comes online after the work went to the first)
        go_available(other)

        # when the first agent's connection is gone past the grace period

        # then it is offline, and its offer goes to the other agent
        offered(other, offered_id)
        assert status_of(maja) == "offline"

        # when it reconnects inside the reconnect window
        with opened(live_platform, token) as back:
            hello = back.next()

        # then it is told it is offline, and still holds its ticket
        assert hello["agent"]["status"] == "offline"
        assert hello["offers"] == []
        assert [t["id"] for t in hello["tickets"]] == [ticket["id"]]

        # when it is gone past the reconnect window

        # then the ticket is requeued, the bot told, and the other agent offered it
        offered(other, assigned_id)
        wait_for(
            lambda: bot_receiver.events() == ["ticket.assigned", "ticket.requeued"],
            what="the ticket.requeued webhook",
        )
        requeued = bot_receiver.received[1].json
        assert (requeued["ticket"]["id"], requeued["sequence"]) == (assigned_id, 2)

        # and when it comes back at last, it holds nothing
        with opened(live_platform, token) as last:
            hello = last.next()
        assert (hello["agent"]["status"], hello["offers"], hello["tickets"]) == (
            "offline",
            [],
            [],
        )


def test_a_reconnect_receives_a_missed_offer_through_hello(live_platform, agent_factory, bot):
    # given an agent whose connection drops just as an offer is made to it, before it could
    # read the offer's frame; and a conversation escalated while it was away
    maja = agent_factory(languages=["sv"])
    token = token_of(maja)
    with opened(live_platform, token) as tab:
        go_available(tab)
        ticket_id = escalate(live_platform, bot, "conv-missed")
        offer = wait_for(lambda: Offer.objects.filter(ticket_id=ticket_id).first(), what="offer")
    wait_for(lambda: not AgentConnection.objects.filter(agent=maja).exists(), what="the disconnect")
    waiting_id = escalate(live_platform, bot, "conv-waiting")

    # when it reconnects
    with opened(live_platform, token) as back:
        hello = back.next()

        # then the missed offer is in its hello, as the frame would have shown it, and the
        # conversation that waited is offered at once
        assert hello["type"] == "hello"
        waiting = offered(back, waiting_id)
        missed = (str(offer.pk), offer.expires_at.isoformat(), ticket_id)
        # The waiting conversation's drain, asked for as the socket connected, may run before
        # the hello's snapshot is read: the hello then lists its offer too. Its frame comes
        # after the hello either way.
        assert [(o["id"], o["expires_at"], o["ticket"]["id"]) for o in hello["offers"]] in (
            [missed],
            [missed, (waiting["id"], waiting["expires_at"], waiting_id)],
        )
