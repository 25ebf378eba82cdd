"""Webhooks to the bot (contract section 2), delivered in process (Celery runs eagerly) to a
real HTTP server playing the bot's endpoint.

Eager tasks run at once, countdowns included, so a retry sent with a back-off finds its
delivery not yet due and does nothing; `time_passes` stands for the back-off elapsing, after
which the periodic re-send (the same one beat runs) sends what is due."""

import hashlib
import hmac
import json
import socket
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from dispatch import services as dispatch_services
from dispatch.models import Offer
from tests.live import free_port
from tickets import services as ticket_services
from tickets.models import Message, Ticket, WebhookAttempt, WebhookDelivery
from tickets.tasks import deliver_webhook, resend_due_webhooks
from tickets.webhooks import (
    MAX_RETRIES,
    backoff_seconds,
    webhook_enqueue,
    webhook_retry_now,
    webhooks_resend_due,
)

pytestmark = pytest.mark.django_db(transaction=True)

SIGNING_SECRET = "webhook-test-secret"


@pytest.fixture
def hooked_bot(bot_factory):
    return bot_factory(signing_secret=SIGNING_SECRET)


def enqueue(ticket: Ticket, event: str, message: Message | None = None) -> WebhookDelivery | None:
    """Record an event as the services do, under the ticket's row lock; the delivery task runs
    when the transaction commits."""
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        return webhook_enqueue(ticket=locked, event=event, message=message)


def time_passes(*deliveries: WebhookDelivery) -> None:
    """The back-off of these pending deliveries is over."""
    WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        next_attempt_at=timezone.now()
    )


def lost_delivery(ticket: Ticket, sequence: int = 1, event: str = "ticket.assigned"):
    """A delivery recorded as webhook_enqueue records it, whose task never reached a worker
    (the broker was down at enqueue, or the worker died holding it)."""
    return WebhookDelivery.objects.create(
        ticket=ticket,
        event=event,
        sequence=sequence,
        url=ticket.callback_url,
        body=json.dumps({"event": event, "sequence": sequence}),
        next_attempt_at=timezone.now(),
    )


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SIGNING_SECRET.encode(), body, hashlib.sha256).hexdigest()


def attempts_of(delivery: WebhookDelivery) -> list[tuple[int | None, str]]:
    return list(delivery.attempts.order_by("id").values_list("status_code", "error"))


def sent(receiver) -> list[tuple[int, str]]:
    return [(hook.json["sequence"], hook.json["event"]) for hook in receiver.received]


# --- one delivery ---------------------------------------------------------------------------


def test_a_webhook_is_signed_identified_and_delivered(hooked_bot, ticket_factory, bot_receiver):
    # given
    ticket = ticket_factory(
        integration=hooked_bot, external_id="conv-8812", callback_url=bot_receiver.url
    )

    # when
    delivery = enqueue(ticket, "ticket.assigned")

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
    [attempt] = delivery.attempts.all()
    assert (attempt.status_code, attempt.error) == (200, "")
    assert (
        delivery.event,
        delivery.sequence,
        delivery.url,
        delivery.state,
        delivery.attempt_count,
        delivery.delivered_at,
        delivery.next_attempt_at,
    ) == (
        "ticket.assigned",
        1,
        bot_receiver.url,
        WebhookDelivery.State.DELIVERED,
        1,
        attempt.attempted_at,
        None,
    )


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
    assert [
        (hook.json["ticket"]["id"], hook.json["sequence"], hook.json["event"])
        for hook in bot_receiver.received
    ] == [
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


def test_a_ticket_without_callback_url_gets_no_delivery(hooked_bot, ticket_factory):
    # given
    ticket = ticket_factory(integration=hooked_bot, callback_url="")

    # when
    delivery = enqueue(ticket, "ticket.assigned")

    # then
    assert delivery is None
    assert WebhookDelivery.objects.count() == 0
    assert Ticket.objects.get(pk=ticket.pk).webhook_sequence == 0


# --- the five events, from the real services --------------------------------------------------


def test_the_five_events_reach_the_bot_in_order(
    hooked_bot, agent_factory, bot_receiver, django_user_model
):
    # given two online agents, a coordinator and a bot with a webhook
    agent_factory(online=True, display_name="Maja")
    agent_factory(online=True, display_name="Kim")
    coordinator = django_user_model.objects.create_user("coordinator", is_staff=True)

    def escalate(external_id: str) -> Ticket:
        ticket, _ = ticket_services.ticket_escalate(
            integration=hooked_bot,
            external_id=external_id,
            language="en",
            customer_id="cust-1",
            callback_url=bot_receiver.url,
        )
        return ticket

    def accept(ticket: Ticket):
        offer = Offer.objects.select_related("agent").get(ticket=ticket, status="pending")
        dispatch_services.offer_accept(offer_id=offer.pk, agent=offer.agent)
        return offer.agent

    # when one ticket is accepted, answered, released (and so offered to the other agent),
    # accepted again and resolved
    ticket = escalate("conv-1")
    first_agent = accept(ticket)
    ticket_services.ticket_add_agent_message(ticket_id=ticket.pk, agent=first_agent, text="Hi.")
    dispatch_services.ticket_release(ticket_id=ticket.pk, agent=first_agent)
    second_agent = accept(ticket)
    ticket_services.ticket_resolve(ticket_id=ticket.pk, agent=second_agent, outcome="solved")
    # and another is cancelled by the bot, then one by a coordinator
    by_bot = escalate("conv-2")
    ticket_services.ticket_cancel(ticket_id=by_bot.pk)
    by_coordinator = escalate("conv-3")
    ticket_services.ticket_cancel(ticket_id=by_coordinator.pk, actor=coordinator)

    # then the bot heard every event of the first ticket in order, and only the coordinator's
    # cancel (its own cancel is not echoed back)
    assert [
        (hook.json["ticket"]["external_id"], hook.json["sequence"], hook.json["event"])
        for hook in bot_receiver.received
    ] == [
        ("conv-1", 1, "ticket.assigned"),
        ("conv-1", 2, "ticket.message"),
        ("conv-1", 3, "ticket.requeued"),
        ("conv-1", 4, "ticket.assigned"),
        ("conv-1", 5, "ticket.resolved"),
        ("conv-3", 1, "ticket.cancelled"),
    ]
    hooks = bot_receiver.received
    assert {first_agent.display_name, second_agent.display_name} == {"Maja", "Kim"}
    assert hooks[0].json["ticket"]["agent"] == {"display_name": first_agent.display_name}
    assert hooks[1].json["message"]["text"] == "Hi."
    assert hooks[2].json["ticket"]["status"] == "queued"
    assert hooks[3].json["ticket"]["agent"] == {"display_name": second_agent.display_name}
    assert hooks[4].json["ticket"]["resolution"] == {"outcome": "solved", "note": ""}
    assert hooks[5].json["ticket"]["status"] == "cancelled"
    assert all(hook.headers["x-dispatch-signature"] == signature(hook.body) for hook in hooks)


# --- retries ----------------------------------------------------------------------------------


def test_an_error_answer_is_retried_after_its_backoff_until_delivered(
    hooked_bot, ticket_factory, bot_receiver
):
    # given a bot endpoint that fails three times, then answers 200
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    bot_receiver.responses = [500, 404, 302]

    # when the event is sent, and each back-off passes in turn
    delivery = enqueue(ticket, "ticket.assigned")
    schedule = []
    for _ in range(3):
        delivery.refresh_from_db()
        last = delivery.attempts.latest("id")
        schedule.append(delivery.next_attempt_at - last.attempted_at)
        time_passes(delivery)
        resend_due_webhooks.delay()

    # then each failure waited its back-off (5, 10, 20 s), and the same signed delivery was
    # sent until it succeeded, every attempt recorded
    assert schedule == [timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20)]
    assert len(bot_receiver.received) == 4
    assert {hook.body for hook in bot_receiver.received} == {delivery.body.encode()}
    assert {hook.headers["x-dispatch-delivery"] for hook in bot_receiver.received} == {
        str(delivery.id)
    }
    assert {hook.headers["x-dispatch-signature"] for hook in bot_receiver.received} == {
        signature(delivery.body.encode())
    }
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count, delivery.next_attempt_at) == (
        WebhookDelivery.State.DELIVERED,
        4,
        None,
    )
    assert attempts_of(delivery) == [
        (500, "HTTP 500"),
        (404, "HTTP 404"),
        (302, "HTTP 302"),
        (200, ""),
    ]


def test_a_delivery_in_backoff_is_not_sent_before_it_is_due(
    hooked_bot, ticket_factory, bot_receiver
):
    # given a delivery whose first attempt failed
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    bot_receiver.responses = [503]
    delivery = enqueue(ticket, "ticket.assigned")

    # when its task arrives again early (a duplicated message) and the re-send runs
    deliver_webhook.delay(str(delivery.id))
    resent = webhooks_resend_due()

    # then nothing more is sent before the back-off is over
    assert resent == []
    assert len(bot_receiver.received) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count) == (WebhookDelivery.State.PENDING, 1)


def test_an_unreachable_endpoint_is_given_up_after_the_last_retry(hooked_bot, ticket_factory):
    # given a callback URL where nothing listens
    ticket = ticket_factory(
        integration=hooked_bot, callback_url=f"http://127.0.0.1:{free_port()}/hooks"
    )

    # when the first attempt and every retry fail
    delivery = enqueue(ticket, "ticket.assigned")
    for _ in range(MAX_RETRIES):
        time_passes(delivery)
        resend_due_webhooks.delay()

    # then every attempt is recorded, and the delivery is given up
    delivery.refresh_from_db()
    assert (
        delivery.state,
        delivery.attempt_count,
        delivery.delivered_at,
        delivery.next_attempt_at,
    ) == (WebhookDelivery.State.FAILED, 1 + MAX_RETRIES, None, None)
    assert attempts_of(delivery) == [(None, "ConnectError: [Errno 111] Connection refused")] * (
        1 + MAX_RETRIES
    )
    # and a failed delivery is not sent again by itself
    assert webhooks_resend_due() == []


def test_an_endpoint_that_does_not_answer_in_time_is_retried(hooked_bot, ticket_factory, settings):
    # given a bot endpoint that takes connections and never answers, and a short time-out
    assert settings.WEBHOOK_TIMEOUT_SECONDS == 10.0
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hooks"

        # when
        delivery = enqueue(ticket_factory(integration=hooked_bot, callback_url=url), "x.y")

    # then the attempt is recorded as a time-out, and retried after the first back-off
    delivery.refresh_from_db()
    [attempt] = delivery.attempts.all()
    assert (attempt.status_code, attempt.error) == (None, "ReadTimeout: timed out")
    assert attempt.duration_ms >= 200
    assert (delivery.state, delivery.next_attempt_at) == (
        WebhookDelivery.State.PENDING,
        attempt.attempted_at + timedelta(seconds=5),
    )


def test_a_delivered_webhook_is_not_sent_again(hooked_bot, ticket_factory, bot_receiver):
    # given a delivered webhook
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    delivery = enqueue(ticket, "ticket.assigned")

    # when its task runs again (a redelivered Celery message)
    deliver_webhook.delay(str(delivery.id))

    # then nothing more is sent or recorded
    assert len(bot_receiver.received) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_a_delivery_in_flight_is_not_sent_twice_at_once(hooked_bot, ticket_factory, bot_receiver):
    # given a delivery a worker has claimed and is sending right now
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    delivery = lost_delivery(ticket)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() + timedelta(seconds=60)
    )

    # when a duplicate of its task and the periodic re-send run
    deliver_webhook.delay(str(delivery.id))
    resent = webhooks_resend_due()

    # then neither sends it
    assert (resent, bot_receiver.received) == ([], [])


@pytest.mark.parametrize(("retries", "seconds"), [(0, 5), (1, 10), (2, 20), (7, 600), (15, 600)])
def test_backoff_doubles_from_5_seconds_to_a_10_minute_ceiling(retries, seconds):
    assert backoff_seconds(retries) == seconds


def test_retries_span_more_than_an_hour():
    # when every retry waits its back-off
    total = sum(backoff_seconds(retries) for retries in range(MAX_RETRIES))

    # then the last attempt is 6,035 s (100 minutes) after the first
    assert (MAX_RETRIES, total) == (16, 6035)


# --- order and lost tasks ---------------------------------------------------------------------


def test_a_later_event_waits_until_the_earlier_one_is_delivered(
    hooked_bot, ticket_factory, bot_receiver
):
    # given a ticket whose first event fails once
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    bot_receiver.responses = [503]
    first = enqueue(ticket, "ticket.assigned")

    # when the next two events happen while the first is in back-off
    second = enqueue(ticket, "ticket.message")
    third = enqueue(ticket, "ticket.resolved")
    held = sent(bot_receiver)
    resent_while_held = webhooks_resend_due()
    # and the first's back-off passes
    time_passes(first)
    resend_due_webhooks.delay()

    # then nothing overtook the first, and the rest followed it in order
    assert held == [(1, "ticket.assigned")]
    assert resent_while_held == []
    assert sent(bot_receiver) == [
        (1, "ticket.assigned"),
        (1, "ticket.assigned"),
        (2, "ticket.message"),
        (3, "ticket.resolved"),
    ]
    assert [WebhookDelivery.objects.get(pk=d.pk).state for d in (first, second, third)] == [
        WebhookDelivery.State.DELIVERED
    ] * 3


def test_a_given_up_delivery_does_not_hold_back_the_next(hooked_bot, ticket_factory, bot_receiver):
    # given a ticket's first delivery failed for good and its second was waiting behind it
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    first = lost_delivery(ticket, sequence=1)
    WebhookDelivery.objects.filter(pk=first.pk).update(attempt_count=MAX_RETRIES)
    lost_delivery(ticket, sequence=2, event="ticket.resolved")
    bot_receiver.responses = [500]

    # when the first's last retry fails
    deliver_webhook.delay(str(first.pk))

    # then it is given up and the second goes out at once
    assert WebhookDelivery.objects.get(pk=first.pk).state == WebhookDelivery.State.FAILED
    assert sent(bot_receiver) == [(1, "ticket.assigned"), (2, "ticket.resolved")]


def test_deliveries_whose_task_was_lost_are_sent_by_the_periodic_resend(
    hooked_bot, ticket_factory, bot_receiver
):
    # given two tickets whose deliveries were recorded but never reached a worker
    first = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    second = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    first_assigned = lost_delivery(first, sequence=1)
    first_resolved = lost_delivery(first, sequence=2, event="ticket.resolved")
    second_assigned = lost_delivery(second, sequence=1)

    # when the periodic re-send runs
    resent = webhooks_resend_due()

    # then it sent the first in line of each ticket, and the rest followed in order
    assert sorted(resent) == sorted([first_assigned.pk, second_assigned.pk])
    assert sorted(
        (hook.json["sequence"], hook.headers["x-dispatch-delivery"])
        for hook in bot_receiver.received
    ) == sorted(
        [(1, str(first_assigned.pk)), (2, str(first_resolved.pk)), (1, str(second_assigned.pk))]
    )
    received = [hook.headers["x-dispatch-delivery"] for hook in bot_receiver.received]
    assert received.index(str(first_assigned.pk)) < received.index(str(first_resolved.pk))
    assert WebhookDelivery.objects.filter(state=WebhookDelivery.State.DELIVERED).count() == 3


# --- a coordinator's retry --------------------------------------------------------------------


def failed_delivery(ticket: Ticket) -> WebhookDelivery:
    delivery = lost_delivery(ticket)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state=WebhookDelivery.State.FAILED, attempt_count=1 + MAX_RETRIES, next_attempt_at=None
    )
    return delivery


def test_retrying_a_failed_delivery_sends_it_now(hooked_bot, ticket_factory, bot_receiver):
    # given a delivery given up while the bot's endpoint was down, which is up again
    delivery = failed_delivery(
        ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    )

    # when a coordinator retries it
    webhook_retry_now(delivery_id=delivery.pk)

    # then it is delivered
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count) == (
        WebhookDelivery.State.DELIVERED,
        2 + MAX_RETRIES,
    )
    assert len(bot_receiver.received) == 1


def test_a_retried_delivery_that_fails_again_is_failed_again(
    hooked_bot, ticket_factory, bot_receiver
):
    # given a failed delivery whose endpoint still fails
    delivery = failed_delivery(
        ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    )
    bot_receiver.responses = [502]

    # when a coordinator retries it
    webhook_retry_now(delivery_id=delivery.pk)

    # then it had one more attempt, and is failed again
    delivery.refresh_from_db()
    assert (delivery.state, delivery.next_attempt_at, attempts_of(delivery)) == (
        WebhookDelivery.State.FAILED,
        None,
        [(502, "HTTP 502")],
    )


def test_retrying_a_delivered_delivery_does_nothing(hooked_bot, ticket_factory, bot_receiver):
    # given
    delivery = enqueue(
        ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url), "ticket.assigned"
    )

    # when
    retried = webhook_retry_now(delivery_id=delivery.pk)

    # then
    assert retried is None
    assert len(bot_receiver.received) == 1


@pytest.fixture
def admin_client_(client):
    client.force_login(
        get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    )
    return client


def test_the_admin_shows_every_attempt_of_a_delivery(
    admin_client_, hooked_bot, ticket_factory, bot_receiver
):
    # given a delivery that failed once, then succeeded
    ticket = ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url)
    bot_receiver.responses = [503]
    delivery = enqueue(ticket, "ticket.assigned")
    time_passes(delivery)
    resend_due_webhooks.delay()

    # when a coordinator opens it
    response = admin_client_.get(f"/admin/tickets/webhookdelivery/{delivery.pk}/change/")

    # then both attempts are listed with their status and error
    assert response.status_code == 200
    inline = response.context["inline_admin_formsets"][0]
    assert [(form.original.status_code, form.original.error) for form in inline] == [
        (503, "HTTP 503"),
        (200, ""),
    ]


def test_the_admin_retries_failed_deliveries_now(
    admin_client_, hooked_bot, ticket_factory, bot_receiver
):
    # given a failed delivery and a delivered one
    failed = failed_delivery(ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url))
    delivered = enqueue(
        ticket_factory(integration=hooked_bot, callback_url=bot_receiver.url), "ticket.resolved"
    )

    # when a coordinator selects both and runs "Retry now"
    response = admin_client_.post(
        "/admin/tickets/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [str(failed.pk), str(delivered.pk)]},
        follow=True,
    )

    # then only the failed one was sent again, and delivered
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["Retrying 1 delivery(ies) now."]
    assert WebhookDelivery.objects.get(pk=failed.pk).state == WebhookDelivery.State.DELIVERED
    assert [hook.headers["x-dispatch-delivery"] for hook in bot_receiver.received] == [
        str(delivered.pk),
        str(failed.pk),
    ]
