"""Webhooks through the real processes, laid out as the Procfile lays them out: a routing
worker and a separate webhooks worker (threads), beat, and the ASGI server. The bot's endpoint
is a real local HTTP server."""

import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.utils import timezone
from knox.models import AuthToken

from dispatch.models import Offer
from tickets.models import Ticket, WebhookAttempt, WebhookDelivery

from ..live import Platform, free_port, platform_env, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SIGNING_SECRET = "live-webhook-secret"
# Fewer threads than the Procfile's 8, so that a few slow deliveries fill the webhooks worker.
WEBHOOK_THREADS = 2
HOLD_AT_MOST_SECONDS = 40


def celery_worker(platform: Platform, name: str, *options: str) -> None:
    platform.start(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "dispatch",
            "worker",
            *options,
            "--hostname",
            f"{name}-{platform.port}@%h",
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        ready="ready.",
    )


@pytest.fixture(scope="module")
def procfile_platform(django_db_setup, django_db_blocker, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("procfile")
    platform = Platform(
        port=free_port(),
        env=platform_env(
            STATIC_ROOT=str(workdir / "static"),
            WEBHOOK_RESEND_INTERVAL_SECONDS="1",
            # Longer than any wait below, so a held webhook is never freed by its time-out.
            WEBHOOK_TIMEOUT_SECONDS="45",
        ),
        workdir=workdir,
    )
    try:
        platform.start_web()
        celery_worker(platform, "router", "--queues", "routing", "--pool", "solo")
        celery_worker(
            platform,
            "webhooks",
            "--queues",
            "webhooks",
            "--pool",
            "threads",
            "--concurrency",
            str(WEBHOOK_THREADS),
        )
        platform.start_beat()
        yield platform
    except BaseException:
        print(platform.logs())
        raise
    finally:
        platform.stop()


class HoldingReceiver:
    """A bot endpoint that takes each webhook and answers only once released: as slow as the
    test wants, with no sleeping."""

    def __init__(self) -> None:
        self.arrived: list[dict] = []
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.arrived.append(json.loads(body))
                receiver.released.wait(HOLD_AT_MOST_SECONDS)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def holding_receiver():
    receiver = HoldingReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def hooked_bot(bot_factory):
    return bot_factory(signing_secret=SIGNING_SECRET)


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SIGNING_SECRET.encode(), body, hashlib.sha256).hexdigest()


def escalate(platform, bot, external_id: str, callback_url: str = "") -> str:
    response = httpx.post(
        f"{platform.url}/api/v1/escalations/",
        headers={"Authorization": f"Bearer {bot.api_key}"},
        json={
            "external_id": external_id,
            "language": "en",
            "customer": {"id": "cust-1"},
            "callback_url": callback_url,
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def agent_api(platform, agent) -> httpx.Client:
    token = AuthToken.objects.create(user=agent.user)[1]
    return httpx.Client(
        base_url=platform.url, headers={"Authorization": f"Token {token}"}, timeout=10
    )


def pending_offer(ticket_id: str) -> Offer | None:
    return Offer.objects.filter(ticket_id=ticket_id, status=Offer.Status.PENDING).first()


def accept(api: httpx.Client, ticket_id: str) -> None:
    offer = wait_for(lambda: pending_offer(ticket_id), what=f"an offer of {ticket_id}")
    assert api.post(f"/api/v1/offers/{offer.pk}/accept/").status_code == 200


def test_a_slow_bot_endpoint_does_not_delay_routing(
    procfile_platform, hooked_bot, agent_factory, holding_receiver
):
    # given an agent working two tickets whose ticket.assigned webhooks the bot's endpoint
    # holds, which keeps every thread of the webhooks worker busy
    agent = agent_factory(online=True, capacity=3)
    api = agent_api(procfile_platform, agent)
    for external_id in ("conv-1", "conv-2"):
        accept(api, escalate(procfile_platform, hooked_bot, external_id, holding_receiver.url))
    wait_for(lambda: len(holding_receiver.arrived) == WEBHOOK_THREADS, what="two held webhooks")

    # when the bot escalates another conversation
    ticket_id = escalate(procfile_platform, hooked_bot, "conv-3")

    # then it is offered while both webhook attempts are still in flight
    wait_for(lambda: pending_offer(ticket_id), what="the offer of the new ticket")
    assert WebhookAttempt.objects.count() == 0
    assert [hook["event"] for hook in holding_receiver.arrived] == ["ticket.assigned"] * 2
    # and once the endpoint answers, the held webhooks are delivered
    holding_receiver.released.set()
    wait_for(
        lambda: WebhookDelivery.objects.filter(state=WebhookDelivery.State.DELIVERED).count() == 2,
        what="the held webhooks delivered",
    )


def test_failed_attempts_are_retried_with_backoff_and_the_order_is_kept(
    procfile_platform, hooked_bot, agent_factory, bot_receiver
):
    # given a bot endpoint that fails its first two requests
    bot_receiver.responses = [500, 503]
    agent = agent_factory(online=True)
    api = agent_api(procfile_platform, agent)
    ticket_id = escalate(procfile_platform, hooked_bot, "conv-retry", bot_receiver.url)

    # when the agent takes the ticket and replies at once
    accept(api, ticket_id)
    reply = api.post(f"/api/v1/agent/tickets/{ticket_id}/messages/", json={"text": "Hello!"})
    assert reply.status_code == 201

    # then the assignment is retried until delivered, and the reply follows it, never before
    wait_for(
        lambda: (
            WebhookDelivery.objects.filter(
                ticket_id=ticket_id, state=WebhookDelivery.State.DELIVERED
            ).count()
            == 2
        ),
        timeout=60,
        what="both webhooks delivered",
    )
    assert [(hook.json["sequence"], hook.json["event"]) for hook in bot_receiver.received] == [
        (1, "ticket.assigned"),
        (1, "ticket.assigned"),
        (1, "ticket.assigned"),
        (2, "ticket.message"),
    ]
    assert all(
        hook.headers["x-dispatch-signature"] == signature(hook.body)
        for hook in bot_receiver.received
    )
    assigned, message = WebhookDelivery.objects.filter(ticket_id=ticket_id).order_by("sequence")
    assert list(assigned.attempts.order_by("id").values_list("status_code", "error")) == [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (200, ""),
    ]
    assert list(message.attempts.values_list("status_code", flat=True)) == [200]
    assert message.attempts.get().attempted_at > assigned.delivered_at


def test_deliveries_whose_task_was_lost_are_sent_again(
    procfile_platform, hooked_bot, ticket_factory, bot_receiver
):
    # given deliveries recorded while the broker was down, so that no task was ever sent
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    for sequence, event in enumerate(["ticket.assigned", "ticket.resolved"], start=1):
        body = json.dumps({"event": event, "sequence": sequence, "ticket": {"id": str(ticket.pk)}})
        WebhookDelivery.objects.create(
            ticket=ticket,
            event=event,
            sequence=sequence,
            url=ticket.callback_url,
            body=body,
            next_attempt_at=timezone.now(),
        )
    Ticket.objects.filter(pk=ticket.pk).update(webhook_sequence=2)

    # when beat's periodic re-send runs, then both reach the bot, in order
    wait_for(lambda: len(bot_receiver.received) == 2, what="the lost deliveries sent")
    assert [hook.json["sequence"] for hook in bot_receiver.received] == [1, 2]
    assert all(
        hook.headers["x-dispatch-signature"] == signature(hook.body)
        for hook in bot_receiver.received
    )
