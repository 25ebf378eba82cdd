"""Faults, against the real platform: an ASGI server, Celery workers and beat as processes on
the test database (PostgreSQL) and a Redis; the bot's webhook endpoint and the agents' sockets
are real clients. Each test breaks one thing the way it breaks in production (a worker killed
mid-step, Redis gone, PostgreSQL unreachable, the bot's endpoint down, an agent's network gone)
and checks what the README's "Guarantees" promise: no ticket lost, never two holders, webhooks
in order, and an API that answers.

The sweeps run every SWEEP_INTERVAL_SECONDS (1 s here) and the presence windows are set to a
few seconds per test, so what takes minutes in production is seen in seconds."""

import re
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

import httpx
import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from websockets.exceptions import ConnectionClosed

from agents.models import Agent
from dispatch.models import Offer

# The module, not its test_database_* functions: pytest would collect those as tests here.
from tests import live
from tests.live import (
    BotReceiver,
    PrivateRedis,
    TcpProxy,
    free_port,
    running_platform,
    wait_for,
)
from tests.test_presence_live import (
    accept,
    escalate,
    go_available,
    offered,
    opened,
    set_policy,
    token_of,
)
from tickets.models import Message, Ticket, WebhookAttempt, WebhookDelivery

pytestmark = [pytest.mark.live, pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

# How long a worker started on a busy two-core machine may take to run its first sweep.
WORKER_TAKES_UP_SECONDS = 2


def blocked_by(backend_pid: int) -> int:
    """How many database sessions wait for a lock that this session holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            [backend_pid],
        )
        return cursor.fetchone()[0]


def lock_row(model, pk) -> psycopg.Connection:
    """A session of the test's own that holds the row locked until it is closed (FOR UPDATE,
    which every other lock and foreign-key check on the row waits for)."""
    holder = psycopg.connect(live.test_database_url())
    table, key = model._meta.db_table, model._meta.pk.column
    holder.execute(f"SELECT 1 FROM {table} WHERE {key} = %s FOR UPDATE", [pk])
    return holder


def ticket_is_locked(ticket_id: str) -> bool:
    try:
        with transaction.atomic():
            Ticket.objects.select_for_update(nowait=True).filter(pk=ticket_id).exists()
    except DatabaseError:
        return True
    return False


def offers_of(ticket_id: str) -> list[tuple]:
    return list(
        Offer.objects.filter(ticket_id=ticket_id)
        .values_list("agent_id", "status")
        .order_by("created_at")
    )


def events_of(ticket_id: str) -> list[str]:
    return list(Ticket.objects.get(pk=ticket_id).events.values_list("kind", flat=True))


# --- 1. A routing worker killed mid-step ----------------------------------------------------


def test_a_routing_worker_killed_mid_routing_loses_no_ticket_and_offers_it_once(
    live_platform, agent_factory, bot
):
    # given an available agent whose row the test holds locked, so that the routing step of the
    # next escalation stops inside its transaction, between locking the ticket and the agent
    maja = agent_factory(languages=["sv"])
    with opened(live_platform, token_of(maja)) as tab:
        go_available(tab)
        holder = lock_row(Agent, maja.pk)
        try:
            ticket_id = escalate(live_platform, bot, "conv-killed")
            wait_for(lambda: blocked_by(holder.info.backend_pid), what="the routing step")
            wait_for(lambda: ticket_is_locked(ticket_id), what="the ticket locked by the step")

            # when the worker is killed there, and the lock let go
            worker = live_platform.processes["worker"].popen
            worker.kill()
            worker.wait()
        finally:
            holder.close()

        # then the ticket is waiting, untouched: the killed step's transaction rolled back
        wait_for(lambda: not ticket_is_locked(ticket_id), what="the killed step rolled back")
        assert Ticket.objects.values_list("status", flat=True).get(pk=ticket_id) == "queued"
        assert offers_of(ticket_id) == []

        # when a new worker starts
        live_platform.start_worker("worker-2")
        started = time.monotonic()

        # then the sweep offers the ticket within its interval, once, to the agent
        offer = offered(tab, ticket_id)
        assert time.monotonic() - started < live.SWEEP_INTERVAL_SECONDS + WORKER_TAKES_UP_SECONDS
        assert offers_of(ticket_id) == [(maja.pk, "pending")]
        assert accept(tab, offer)["status"] == "assigned"
        assert offers_of(ticket_id) == [(maja.pk, "accepted")]
        assert events_of(ticket_id) == ["escalated", "offered", "assigned"]


# --- 2. Redis stopped while escalations arrive ----------------------------------------------

REDIS_OUTAGE_SECONDS = 30
ESCALATION_EVERY_SECONDS = 7
# A publish to a Redis that refuses connections fails in milliseconds; one to a Redis that
# accepts and never answers in about 4 s (settings: CELERY_BROKER_TRANSPORT_OPTIONS).
QUICK_ANSWER_SECONDS = 1.0


RECONNECT_ATTEMPTS = 10
RECONNECT_BACKOFF_SECONDS = 0.5


def reconnect(platform, token: str) -> dict:
    """Open the agent's socket as the portal does after losing it, trying again after a pause
    while the server closes it (a web process's first use of a Redis connection that the
    restart broke fails); returns the `hello`."""
    for _ in range(RECONNECT_ATTEMPTS - 1):
        try:
            with opened(platform, token) as back:
                return back.next()
        except ConnectionClosed:
            time.sleep(RECONNECT_BACKOFF_SECONDS)
    with opened(platform, token) as back:
        return back.next()


@pytest.fixture
def private_redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_platform(transactional_db, tmp_path_factory, private_redis):
    """The platform on a Redis of this test's own, which the test stops and starts."""
    yield from running_platform(tmp_path_factory.mktemp("platform"), REDIS_URL=private_redis.url)


def test_redis_down_for_30_s_loses_no_escalation(redis_platform, private_redis, agent_factory, bot):
    # given an available agent, whose offers do not expire during the test
    set_policy(offer_timeout_seconds=600, heartbeat_timeout_seconds=600)
    maja = agent_factory(languages=["sv"], capacity=5)
    token = token_of(maja)
    with opened(redis_platform, token) as tab:
        go_available(tab)

        # when Redis stops, and the bot escalates four conversations over the outage
        private_redis.stop()
        stopped = time.monotonic()
        took, ticket_ids = [], []
        for number in range(4):
            time.sleep(max(0.0, stopped + number * ESCALATION_EVERY_SECONDS - time.monotonic()))
            started = time.monotonic()
            ticket_ids.append(escalate(redis_platform, bot, f"conv-outage-{number}"))
            took.append(time.monotonic() - started)
        ready = httpx.get(f"{redis_platform.url}/readyz", timeout=10)

        # then each was accepted at once, and the lost routing tasks were logged
        assert [seconds < QUICK_ANSWER_SECONDS for seconds in took] == [True] * 4, took
        assert (ready.status_code, ready.json()) == (503, {"database": "ok", "redis": "down"})
        web_log = redis_platform.processes["web"].log.read_text()
        for ticket_id in ticket_ids:
            assert (
                f"Could not enqueue dispatch.route_ticket('{ticket_id}',); "
                "the sweep will repair it" in web_log
            )
        # and the agent's socket, whose channel layer is gone, was closed by the server
        wait_for(lambda: tab.socket.close_code is not None, what="the socket closed")

        # when Redis comes back (empty) after 30 s
        time.sleep(max(0.0, REDIS_OUTAGE_SECONDS - (time.monotonic() - stopped)))
        private_redis.start()

    # then every ticket is offered to the agent, once
    wait_for(
        lambda: Ticket.objects.filter(pk__in=ticket_ids, status="offered").count() == 4,
        timeout=60,
        what="every ticket offered",
    )
    assert [offers_of(ticket_id) for ticket_id in ticket_ids] == [[(maja.pk, "pending")]] * 4
    ready = httpx.get(f"{redis_platform.url}/readyz", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"database": "ok", "redis": "ok"})

    # and the agent's reconnecting socket gets its whole state in hello
    hello = reconnect(redis_platform, token)
    assert (hello["type"], hello["agent"]["status"]) == ("hello", "available")
    assert sorted(offer["ticket"]["id"] for offer in hello["offers"]) == sorted(ticket_ids)


# --- 3. PostgreSQL unreachable --------------------------------------------------------------

TRANSCRIPT = [
    {"role": "customer", "text": "I was charged twice"},
    {"role": "bot", "text": "I can help with that..."},
    {"role": "customer", "text": "A person, please."},
]
UNAVAILABLE = {"detail": "The service is temporarily unavailable; try again in a few seconds."}


@pytest.fixture
def database_proxy():
    proxy = TcpProxy(live.test_database_address())
    proxy.up()
    yield proxy
    proxy.down()


@pytest.fixture
def proxied_platform(transactional_db, tmp_path_factory, database_proxy):
    """The platform reaching PostgreSQL only through a proxy that the test can cut."""
    yield from running_platform(
        tmp_path_factory.mktemp("platform"),
        DATABASE_URL=live.test_database_url(port=database_proxy.port),
    )


def waiting_statement(holder: psycopg.Connection) -> str | None:
    """The statement of the session that waits for the holder's lock, if one does."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            [holder.info.backend_pid],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def test_postgresql_unreachable_answers_503_and_leaves_nothing_half_written(
    proxied_platform, database_proxy, agent_factory, bot, skill_factory
):
    # given an available agent, and an escalation caught in its COMMIT when PostgreSQL becomes
    # unreachable: the test holds the row of the skill it needs, whose foreign-key check
    # PostgreSQL makes at commit (Django's foreign keys are deferred)
    refunds = skill_factory(slug="refunds")
    maja = agent_factory(online=True, languages=["sv"], skills=[refunds.slug], capacity=3)
    escalation = {
        "external_id": "conv-in-doubt",
        "language": "sv",
        "skills": ["refunds"],
        "customer": {"id": "cust-1"},
        "transcript": TRANSCRIPT,
    }
    bot_api = httpx.Client(
        base_url=proxied_platform.url,
        headers={"Authorization": f"Bearer {bot.api_key}"},
        timeout=30,
    )
    portal = httpx.Client(base_url=proxied_platform.url, timeout=30)
    csrf_token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', portal.get("/accounts/login/").text
    ).group(1)
    holder = lock_row(type(refunds), refunds.pk)
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(bot_api.post, "/api/v1/escalations/", json=escalation)
            assert wait_for(lambda: waiting_statement(holder), what="the commit") == "COMMIT"

            # when PostgreSQL becomes unreachable, and the bot escalates another conversation
            database_proxy.down()
            in_doubt = pending.result()
        during = bot_api.post("/api/v1/escalations/", json=escalation | {"external_id": "conv-2"})
        ready = httpx.get(f"{proxied_platform.url}/readyz", timeout=10)
        # and an agent tries to log in to the portal
        log_in = portal.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": csrf_token, "username": "maja", "password": "pw-1"},
        )
    finally:
        holder.close()

    # then the bot is told to try again later, in a plain JSON answer, and readiness names the
    # database
    assert (in_doubt.status_code, in_doubt.headers["Retry-After"], in_doubt.json()) == (
        503,
        "5",
        UNAVAILABLE,
    )
    assert (during.status_code, during.json()) == (503, UNAVAILABLE)
    assert (ready.status_code, ready.json()) == (503, {"database": "down", "redis": "ok"})
    # and the portal's page says the same, not a server error
    assert (log_in.status_code, log_in.headers["Retry-After"]) == (503, "5")
    assert UNAVAILABLE["detail"] in log_in.text
    # and the commit that was under way completes whole, with the whole transcript, while the
    # escalation refused at the door left nothing
    in_doubt_ticket = wait_for(
        lambda: Ticket.objects.filter(external_id="conv-in-doubt").first(), what="the commit"
    )
    assert list(
        Message.objects.filter(ticket=in_doubt_ticket)
        .values_list("role", "text")
        .order_by("position")
    ) == [(entry["role"], entry["text"]) for entry in TRANSCRIPT]
    assert events_of(in_doubt_ticket.pk) == ["escalated"]
    assert not Ticket.objects.filter(external_id="conv-2").exists()

    # when PostgreSQL is back (the web process's pool reconnects on its own schedule: the bot
    # retries a 503, as Retry-After asks, so the replays start once /readyz sees it), and the
    # bot sends both escalations again
    database_proxy.up()
    wait_for(
        lambda: httpx.get(f"{proxied_platform.url}/readyz", timeout=10).status_code == 200,
        what="the platform to reach PostgreSQL again",
    )
    replays = [
        bot_api.post("/api/v1/escalations/", json=escalation | {"external_id": external_id})
        for external_id in ("conv-in-doubt", "conv-2")
    ]

    # then the first is the ticket already made, the second a new one; and both are offered
    # to the agent, the first by the sweep (its routing task was never sent)
    assert [(replay.status_code, replay.json()["external_id"]) for replay in replays] == [
        (200, "conv-in-doubt"),
        (201, "conv-2"),
    ]
    ticket_ids = [replay.json()["id"] for replay in replays]
    assert ticket_ids[0] == str(in_doubt_ticket.pk)
    wait_for(
        lambda: [offers_of(ticket_id) for ticket_id in ticket_ids] == [[(maja.pk, "pending")]] * 2,
        what="both offers",
    )
    assert Ticket.objects.filter(external_id__in=["conv-in-doubt", "conv-2"]).count() == 2


# --- 4. The bot's webhook endpoint down -----------------------------------------------------

# Down across the first three attempts of each delivery (the back-off is 5 s doubling: attempts
# at 0, 5 and 15 s), up before the fourth (35 s).
ENDPOINT_DOWN_SECONDS = 20


def pending_offer(ticket_id: str) -> Offer | None:
    return Offer.objects.filter(ticket_id=ticket_id, status=Offer.Status.PENDING).first()


def attempts_of(ticket_id: str) -> list[tuple]:
    """(sequence, event, [each attempt's status code]) of every delivery of the ticket."""
    return [
        (
            delivery.sequence,
            delivery.event,
            list(delivery.attempts.order_by("attempted_at").values_list("status_code", flat=True)),
        )
        for delivery in WebhookDelivery.objects.filter(ticket_id=ticket_id).order_by("sequence")
    ]


def sequence_of(webhooks: list[dict], ticket_id: str) -> list[tuple[int, str]]:
    """(sequence, event) of one ticket's webhooks, in the order they arrived."""
    return [
        (hook["sequence"], hook["event"]) for hook in webhooks if hook["ticket"]["id"] == ticket_id
    ]


def test_a_bot_endpoint_down_delays_only_its_webhooks_which_then_arrive_in_order(
    live_platform, agent_factory, bot
):
    # given a bot whose webhook endpoint does not answer (nothing listens at its address), and
    # an agent working over REST
    port = free_port()
    callback_url = f"http://127.0.0.1:{port}/hooks/dispatch"
    maja = agent_factory(online=True, languages=["sv"], capacity=3)
    agent_api = httpx.Client(
        base_url=live_platform.url,
        headers={"Authorization": f"Token {token_of(maja)}"},
        timeout=10,
    )

    # when the agent takes two of the bot's conversations, answers and resolves the first
    first, second = (
        escalate(live_platform, bot, external_id, callback_url=callback_url)
        for external_id in ("conv-1", "conv-2")
    )
    for offer in (wait_for(partial(pending_offer, ticket_id)) for ticket_id in (first, second)):
        assert agent_api.post(f"/api/v1/offers/{offer.pk}/accept/").status_code == 200
    reply = agent_api.post(f"/api/v1/agent/tickets/{first}/messages/", json={"text": "Hej!"})
    resolved = agent_api.post(f"/api/v1/agent/tickets/{first}/resolve/", json={"outcome": "solved"})

    # then the API and routing go on as usual while every delivery fails
    assert (reply.status_code, resolved.status_code) == (201, 200)
    third = escalate(live_platform, bot, "conv-3")
    wait_for(lambda: pending_offer(third), timeout=5, what="the next ticket offered")
    first_attempt = wait_for(
        lambda: (
            WebhookAttempt.objects.filter(delivery__ticket_id=first, delivery__sequence=1)
            .values_list("attempted_at", flat=True)
            .first()
        ),
        what="the first attempt",
    )

    # when the endpoint comes back
    time.sleep(max(0.0, first_attempt.timestamp() + ENDPOINT_DOWN_SECONDS - time.time()))
    with BotReceiver(port=port) as receiver:
        # then every webhook is delivered, each ticket's in the order of its sequence
        wait_for(
            lambda: not WebhookDelivery.objects.exclude(state="delivered").exists(),
            timeout=60,
            what="every webhook delivered",
        )
        arrived = [hook.json for hook in receiver.received]
    assert sequence_of(arrived, first) == [
        (1, "ticket.assigned"),
        (2, "ticket.message"),
        (3, "ticket.resolved"),
    ]
    assert sequence_of(arrived, second) == [(1, "ticket.assigned")]
    # after three attempts refused each, for the first of each ticket; the later ones waited
    # for it and went through at once
    assert attempts_of(first) == [
        (1, "ticket.assigned", [None, None, None, 200]),
        (2, "ticket.message", [200]),
        (3, "ticket.resolved", [200]),
    ]
    assert attempts_of(second) == [(1, "ticket.assigned", [None, None, None, 200])]


SLOW_ENDPOINT_SECONDS = 2


def test_a_slow_bot_endpoint_gets_a_tickets_webhooks_one_at_a_time_in_order(
    live_platform, agent_factory, bot
):
    # given a bot whose webhook endpoint takes 2 s to answer, and an agent offered its ticket
    maja = agent_factory(online=True, languages=["sv"], capacity=3)
    agent_api = httpx.Client(
        base_url=live_platform.url,
        headers={"Authorization": f"Token {token_of(maja)}"},
        timeout=10,
    )
    with BotReceiver(delay=SLOW_ENDPOINT_SECONDS) as receiver:
        ticket_id = escalate(live_platform, bot, "conv-slow", callback_url=receiver.url)
        offer = wait_for(partial(pending_offer, ticket_id), what="the offer")

        # when the agent accepts, answers twice and resolves, in quick succession
        calls = [
            (f"/api/v1/offers/{offer.pk}/accept/", {}),
            (f"/api/v1/agent/tickets/{ticket_id}/messages/", {"text": "Hej!"}),
            (f"/api/v1/agent/tickets/{ticket_id}/messages/", {"text": "Klart."}),
            (f"/api/v1/agent/tickets/{ticket_id}/resolve/", {"outcome": "solved"}),
        ]
        answers = []
        for path, body in calls:
            started = time.monotonic()
            status = agent_api.post(path, json=body).status_code
            answers.append((status, time.monotonic() - started < QUICK_ANSWER_SECONDS))

        # then the API answers at once, and routing goes on, while the webhooks crawl
        assert answers == [(200, True), (201, True), (201, True), (200, True)]
        other = escalate(live_platform, bot, "conv-other")
        wait_for(partial(pending_offer, other), timeout=5, what="the next ticket offered")
        wait_for(
            lambda: not WebhookDelivery.objects.exclude(state="delivered").exists(),
            timeout=30,
            what="every webhook delivered",
        )
        arrived = [hook.json for hook in receiver.received]

    # and they reached the bot in sequence order, once each, each sent only once the one before
    # was answered
    assert sequence_of(arrived, ticket_id) == [
        (1, "ticket.assigned"),
        (2, "ticket.message"),
        (3, "ticket.message"),
        (4, "ticket.resolved"),
    ]
    attempts = list(
        WebhookAttempt.objects.filter(delivery__ticket_id=ticket_id)
        .order_by("delivery__sequence")
        .values_list("attempted_at", "duration_ms", "status_code")
    )
    assert [
        (status_code, duration_ms >= SLOW_ENDPOINT_SECONDS * 1000)
        for _, duration_ms, status_code in attempts
    ] == [(200, True)] * 4
    answered = [attempted_at for attempted_at, _, _ in attempts]
    sent = [attempted_at - timedelta(milliseconds=ms) for attempted_at, ms, _ in attempts]
    assert [sent[n + 1] >= answered[n] for n in range(3)] == [True] * 3


# --- 5. An agent's network gone mid-ticket --------------------------------------------------


def drop_network(tab) -> None:
    """Cut the agent's connection as a lost network does: no closing handshake, the socket is
    reset under the server (SO_LINGER 0 turns close into a TCP reset)."""
    raw = tab.socket.socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


def test_an_agent_whose_network_drops_mid_ticket_loses_it_to_another_agent(
    live_platform, agent_factory, bot_factory, bot_receiver
):
    # given 1 s of grace and a 3 s reconnect window; an agent working a ticket, and another
    # agent, connected, who becomes available after it was assigned
    set_policy(offline_grace_seconds=1, reconnect_window_seconds=3)
    maja = agent_factory(languages=["sv"])
    liam = agent_factory(languages=["sv"])
    bot = bot_factory()
    with (
        opened(live_platform, token_of(maja)) as tab,
        opened(live_platform, token_of(liam)) as other,
    ):
        go_available(tab)
        ticket_id = escalate(live_platform, bot, "conv-dropped", callback_url=bot_receiver.url)
        accept(tab, offered(tab, ticket_id))
        go_available(other)

        # when the first agent's network drops in the middle of the conversation
        drop_network(tab)

        # then past the reconnect window the ticket is requeued and offered to the other
        offer = offered(other, ticket_id)
        assert Agent.objects.values_list("status", flat=True).get(pk=maja.pk) == "offline"
        accept(other, offer)
        assert Ticket.objects.values_list("status", "agent_id").get(pk=ticket_id) == (
            "assigned",
            liam.pk,
        )
        assert offers_of(ticket_id) == [(maja.pk, "accepted"), (liam.pk, "accepted")]
        assert events_of(ticket_id) == [
            "escalated",
            "offered",
            "assigned",
            "requeued",
            "offered",
            "assigned",
        ]

        # and the bot heard it in order
        wait_for(lambda: len(bot_receiver.received) == 3, what="three webhooks")
        assert [(hook.json["sequence"], hook.json["event"]) for hook in bot_receiver.received] == [
            (1, "ticket.assigned"),
            (2, "ticket.requeued"),
            (3, "ticket.assigned"),
        ]
