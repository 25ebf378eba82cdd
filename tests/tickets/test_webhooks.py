"""Webhooks to the bot (contract section 2), delivered in process (Celery runs eagerly) to a
real HTTP server playing the bot's endpoint."""

import hashlib
import hmac
import socket
import time

import pytest
from celery.exceptions import Retry
from django.db import transaction

from dispatch.celery import app as celery_app
from tests.live import free_port
from tickets.models import Message, Ticket, WebhookAttempt, WebhookDelivery
from tickets.tasks import MAX_RETRIES, backoff_seconds, deliver_webhook
from tickets.webhooks import webhook_enqueue

pytestmark = pytest.mark.django_db(transaction=True)

SIGNING_SECRET = "webhook-test-secret"


@pytest.fixture
def hooked_bot(bot_factory):
    return bot_factory(signing_secret=SIGNING_SECRET)


@pytest.fixture
def eager_retries():
    """Run an eager task's retry at once, as a worker runs it when its countdown is over.

    The test settings propagate eager tasks' exceptions, and Celery then raises a retry's
    `Retry` to the caller instead of running the retry.
    """
    propagates = celery_app.conf.task_eager_propagates
    celery_app.conf.task_eager_propagates = False
    yield
    celery_app.conf.task_eager_propagates = propagates


def enqueue(ticket: Ticket, event: str, message: Message | None = None) -> WebhookDelivery | None:
    """Record an event as the services do, under the ticket's row lock; the delivery task runs
    when the transaction commits."""
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        return webhook_enqueue(ticket=locked, event=event, message=message)


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SIGNING_SECRET.encode(), body, hashlib.sha256).hexdigest()


def attempts_of(delivery: WebhookDelivery) -> list[tuple[int | None, str]]:
    return list(delivery.attempts.order_by("id").values_list("status_code", "error"))


def test_a_webhook_is_signed_identified_and_delivered(hooked_bot, ticket_factory, bot_receiver):
    # given
    ticket = ticket_factory(
        integration=hooked_bot, external_id="conv-8812", callback_url=bot_receiver.url
    )

    # when
    started = time.monotonic()
    delivery = enqueue(ticket, "ticket.assigned")
    elapsed_ms = (time.monotonic() - started) * 1000

    # then the bot received exactly the stored bytes, signed with its secret
    [hook] = bot_receiver.received
    delivery.refresh_from_db()
    assert hook.body == delivery.body.encode()
    assert hook.headers["content-type"] == "application/json"
    assert hook.headers["x-dispatch-event"] == "ticket.assigned"
    assert hook.headers["x-dispatch-delivery"] == str(delivery.id)
    assert hook.headers["x-dispatch-signature"] == signature(hook.body)
    body = hook.json
    assert sorted(body) == ["delivery_id", "event", "occurred_at", "sequence", "ticket"]
    assert (body["event"], body["delivery_id"], body["sequence"]) == (
        "ticket.assigned",
        str(delivery.id),
        1,
    )
    assert (body["ticket"]["id"], body["ticket"]["external_id"], body["ticket"]["status"]) == (
        str(ticket.id),
        "conv-8812",
        "queued",
    )
    # and the delivery and its one attempt are recorded
    assert (delivery.event, delivery.sequence, delivery.url, delivery.state) == (
        "ticket.assigned",
        1,
        bot_receiver.url,
        WebhookDelivery.State.DELIVERED,
    )
    assert delivery.attempt_count == 1
    assert delivery.delivered_at is not None
    [attempt] = delivery.attempts.all()
    assert (attempt.status_code, attempt.error) == (200, "")
    assert 0 <= attempt.duration_ms <= elapsed_ms


def test_a_message_event_carries_the_message(hooked_bot, ticket_factory, bot_receiver):
    # given an agent's reply on a ticket
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    message = Message.objects.create(
        ticket=ticket, position=1, role="agent", text="Refunded.", sent_at=ticket.created_at
    )

    # when
    enqueue(ticket, "ticket.message", message=message)

    # then
    [hook] = bot_receiver.received
    assert hook.headers["x-dispatch-event"] == "ticket.message"
    assert hook.json["message"] == {
        "id": str(message.id),
        "role": "agent",
        "text": "Refunded.",
        "sent_at": ticket.created_at.isoformat(),
    }


def test_the_sequence_increases_by_one_per_ticket(hooked_bot, ticket_factory, bot_receiver):
    # given two tickets of one bot
    first = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    second = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)

    # when their events interleave
    enqueue(first, "ticket.assigned")
    enqueue(second, "ticket.assigned")
    enqueue(first, "ticket.requeued")
    enqueue(first, "ticket.assigned")
    enqueue(second, "ticket.resolved")
    enqueue(first, "ticket.resolved")

    # then each ticket counts its own events from 1
    sent = [
        (hook.json["ticket"]["id"], hook.json["sequence"], hook.json["event"])
        for hook in bot_receiver.received
    ]
    assert sent == [
        (str(first.id), 1, "ticket.assigned"),
        (str(second.id), 1, "ticket.assigned"),
        (str(first.id), 2, "ticket.requeued"),
        (str(first.id), 3, "ticket.assigned"),
        (str(second.id), 2, "ticket.resolved"),
        (str(first.id), 4, "ticket.resolved"),
    ]
    assert Ticket.objects.get(pk=first.pk).webhook_sequence == 4
    assert Ticket.objects.get(pk=second.pk).webhook_sequence == 2
    assert len({hook.json["delivery_id"] for hook in bot_receiver.received}) == 6


def test_an_error_answer_is_retried_until_delivered(
    hooked_bot, ticket_factory, bot_receiver, eager_retries
):
    # given a bot endpoint that fails three times, then answers 200
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    bot_receiver.responses = [500, 404, 302]

    # when
    delivery = enqueue(ticket, "ticket.assigned")

    # then the same signed delivery is sent until it succeeds, and every attempt is recorded
    assert len(bot_receiver.received) == 4
    assert {hook.body for hook in bot_receiver.received} == {delivery.body.encode()}
    assert {hook.headers["x-dispatch-delivery"] for hook in bot_receiver.received} == {
        str(delivery.id)
    }
    assert {hook.headers["x-dispatch-signature"] for hook in bot_receiver.received} == {
        signature(delivery.body.encode())
    }
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count) == (WebhookDelivery.State.DELIVERED, 4)
    assert attempts_of(delivery) == [
        (500, "HTTP 500"),
        (404, "HTTP 404"),
        (302, "HTTP 302"),
        (200, ""),
    ]


def test_an_unreachable_endpoint_is_retried_then_marked_failed(
    hooked_bot, ticket_factory, eager_retries
):
    # given a callback URL where nothing listens
    ticket = ticket_factory(
        integration=hooked_bot, callback_url=f"http://127.0.0.1:{free_port()}/hooks"
    )

    # when
    delivery = enqueue(ticket, "ticket.assigned")

    # then the first attempt and every retry are recorded, and the delivery is given up
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count, delivery.delivered_at) == (
        WebhookDelivery.State.FAILED,
        1 + MAX_RETRIES,
        None,
    )
    assert attempts_of(delivery) == [(None, "ConnectError: [Errno 111] Connection refused")] * (
        1 + MAX_RETRIES
    )


def pending_delivery(ticket: Ticket) -> WebhookDelivery:
    """A delivery recorded but not yet attempted, as a worker finds it when a retry is due."""
    return WebhookDelivery.objects.create(
        ticket=ticket, event="ticket.assigned", sequence=1, url=ticket.callback_url, body="{}"
    )


@pytest.mark.parametrize(("retries", "countdown"), [(0, 5), (3, 40), (MAX_RETRIES - 1, 600)])
def test_a_failed_attempt_asks_for_a_retry_after_its_backoff(
    hooked_bot, ticket_factory, bot_receiver, retries, countdown
):
    # given a pending delivery to an endpoint that answers 503
    delivery = pending_delivery(
        ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    )
    bot_receiver.responses = [503]

    # when the task runs as the given retry
    with pytest.raises(Retry) as retry:
        deliver_webhook.apply(args=[str(delivery.id)], retries=retries)

    # then it asks to run again after the back-off, and the delivery stays pending
    assert retry.value.when == countdown
    delivery.refresh_from_db()
    assert (delivery.state, attempts_of(delivery)) == (
        WebhookDelivery.State.PENDING,
        [(503, "HTTP 503")],
    )


def test_the_last_retry_that_fails_marks_the_delivery_failed(
    hooked_bot, ticket_factory, bot_receiver
):
    # given a pending delivery to an endpoint that answers 503
    delivery = pending_delivery(
        ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    )
    bot_receiver.responses = [503]

    # when the task runs as the last retry
    deliver_webhook.apply(args=[str(delivery.id)], retries=MAX_RETRIES)

    # then it gives up
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count) == (WebhookDelivery.State.FAILED, 1)


def test_an_endpoint_that_does_not_answer_in_time_is_retried(hooked_bot, ticket_factory, settings):
    # given a bot endpoint that takes connections and never answers, and a short time-out
    assert settings.WEBHOOK_TIMEOUT_SECONDS == 10.0
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hooks"
        delivery = pending_delivery(ticket_factory(integration=hooked_bot, callback_url=url))

        # when
        with pytest.raises(Retry) as retry:
            deliver_webhook.apply(args=[str(delivery.id)])

    # then the attempt is recorded as a time-out, and retried after the first back-off
    assert retry.value.when == 5
    [attempt] = delivery.attempts.all()
    assert (attempt.status_code, attempt.error) == (None, "ReadTimeout: timed out")
    assert attempt.duration_ms >= 200


def test_a_delivered_webhook_is_not_sent_again(hooked_bot, ticket_factory, bot_receiver):
    # given a delivered webhook
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    delivery = enqueue(ticket, "ticket.assigned")

    # when its task runs again (a redelivered Celery message)
    deliver_webhook.delay(str(delivery.id))

    # then nothing more is sent or recorded
    assert len(bot_receiver.received) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_a_ticket_without_callback_url_gets_no_delivery(hooked_bot, ticket_factory):
    # given
    ticket = ticket_factory(integration=hooked_bot, callback_url="")

    # when
    delivery = enqueue(ticket, "ticket.assigned")

    # then
    assert delivery is None
    assert WebhookDelivery.objects.count() == 0
    assert Ticket.objects.get(pk=ticket.pk).webhook_sequence == 0


@pytest.mark.parametrize(
    ("retries", "seconds"),
    [(0, 5), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 320), (7, 600), (15, 600)],
)
def test_backoff_doubles_from_5_seconds_to_a_10_minute_ceiling(retries, seconds):
    assert backoff_seconds(retries) == seconds


def test_retries_span_more_than_an_hour():
    # when every retry waits its back-off
    total = sum(backoff_seconds(retries) for retries in range(MAX_RETRIES))

    # then the last attempt is 6,035 s (100 minutes) after the first
    assert (MAX_RETRIES, total) == (16, 6035)
