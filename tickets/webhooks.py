"""Webhooks to the bot: signed, numbered per ticket, delivered at least once and in order.

Each event is a `WebhookDelivery` row written in the transaction of the change it reports, so
an event exists exactly when its change does. The row, not the Celery message, is the source of
truth: `next_attempt_at` says when the delivery is due, a task is sent for it after commit and
again after every failed attempt, and a periodic task re-sends whatever is due and has no task
(the broker was down at enqueue, a worker was killed). An attempt first claims its delivery
under the row lock, so a duplicated task never sends twice at once.

Per ticket, deliveries reach the bot in sequence order: a delivery waits while an earlier one
of its ticket is still pending (in back-off included), and the next one is sent as soon as the
earlier is delivered or given up. A delivery given up (failed) does not hold back the later
ones; the bot sees the gap in `sequence`, and a coordinator can retry it from the admin.

When WEBHOOK_ALLOW_PRIVATE_ADDRESSES is off (production), every attempt resolves the callback
host afresh and connects only to an address it checked (tickets.validators): a host that is or
now resolves to a private, loopback or otherwise non-public address is refused without a
connection, and since that is the platform's refusal, not the bot's endpoint failing, the
delivery is failed at once instead of retried (a coordinator can retry it once the bot's DNS is
fixed). A host that does not resolve is a connection error, retried as usual.
"""

import hashlib
import hmac
import json
import logging
import socket
import time
import uuid
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from dispatch.celery import enqueue_on_commit

from .events import message_view, ticket_view
from .models import Message, Ticket, WebhookAttempt, WebhookDelivery
from .validators import (
    RefusedAddress,
    check_addresses,
    check_host_name,
    resolve_host,
    url_port,
)

logger = logging.getLogger(__name__)

DELIVER_TASK = "tickets.deliver_webhook"
RESEND_TASK = "tickets.resend_due_webhooks"

# 5 s doubling to a 10-minute ceiling: the 16 retries after the first attempt span about
# 100 minutes, past the hour the contract promises.
MAX_RETRIES = 16
BACKOFF_START_SECONDS = 5
BACKOFF_CEILING_SECONDS = 600

# Celery's ETA and the worker's clock may run a little ahead of the clock that set
# next_attempt_at; a retry that arrives that much early still counts as due.
DUE_TOLERANCE = timedelta(seconds=1)

# How many due deliveries one periodic run re-sends; the next run takes the rest.
RESEND_BATCH = 500


def backoff_seconds(retries: int) -> int:
    """The wait before retry number `retries` + 1."""
    return min(BACKOFF_START_SECONDS * 2**retries, BACKOFF_CEILING_SECONDS)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_enqueue(
    *, ticket: Ticket, event: str, message: Message | None = None
) -> WebhookDelivery | None:
    """Record an event for the ticket's bot and deliver it after commit.

    The caller holds the ticket's row lock, so the per-ticket sequence has no gaps or repeats.
    """
    if not ticket.callback_url:
        return None
    ticket.webhook_sequence += 1
    ticket.save(update_fields=["webhook_sequence"])
    delivery_id = uuid.uuid4()
    now = timezone.now()
    payload = {
        "event": event,
        "delivery_id": str(delivery_id),
        "occurred_at": now.isoformat(),
        "sequence": ticket.webhook_sequence,
        "ticket": ticket_view(ticket),
    }
    if message is not None:
        payload["message"] = message_view(message)
    delivery = WebhookDelivery.objects.create(
        id=delivery_id,
        ticket=ticket,
        event=event,
        sequence=ticket.webhook_sequence,
        url=ticket.callback_url,
        body=json.dumps(payload, separators=(",", ":")),
        next_attempt_at=now,
    )
    enqueue_on_commit(DELIVER_TASK, str(delivery.id))
    return delivery


def _pending_before(*, ticket, sequence) -> QuerySet[WebhookDelivery]:
    """The pending deliveries of a ticket that come before `sequence` (values or OuterRefs)."""
    return WebhookDelivery.objects.filter(
        ticket=ticket, state=WebhookDelivery.State.PENDING, sequence__lt=sequence
    )


def _claim(delivery_id: uuid.UUID | str) -> WebhookDelivery | None:
    """Lock a due delivery and mark it in flight; None when it must not be attempted now."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("ticket__integration")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
            return None
        now = timezone.now()
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + DUE_TOLERANCE:
            # In back-off, or in flight in another worker.
            return None
        if _pending_before(ticket=delivery.ticket_id, sequence=delivery.sequence).exists():
            # The earlier delivery's outcome sends this one (see _send_next_of_ticket).
            return None
        # In flight until the attempt is recorded. A task cannot outlive Celery's hard time
        # limit, so once that has passed the worker is gone and the delivery is due again.
        delivery.next_attempt_at = now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
        delivery.save(update_fields=["next_attempt_at"])
        return delivery


def pinned_target(url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Where an attempt connects: (URL, extra headers, httpx request extensions).

    With private addresses allowed, the URL as it is. Otherwise the URL with its host replaced
    by the first of the host's addresses, all of which were checked, and the host kept as the
    `Host` header and as the TLS name the certificate is verified against; so the connection
    goes to the checked address even if the name resolves differently a moment later.
    Raises RefusedAddress, or httpx.ConnectError when the host does not resolve.
    """
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return url, {}, {}
    parsed = httpx.URL(url)
    host = parsed.raw_host.decode("ascii")
    check_host_name(host)
    try:
        addresses = resolve_host(host, url_port(parsed))
    except (socket.gaierror, UnicodeError) as exc:
        raise httpx.ConnectError(f"{host} does not resolve: {exc}") from exc
    check_addresses(host, addresses)
    pinned = str(parsed.copy_with(host=str(addresses[0])))
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return pinned, {"Host": parsed.netloc.decode("ascii")}, extensions


def _post(delivery: WebhookDelivery) -> tuple[int | None, str, int, bool]:
    """POST the delivery's exact bytes once: (status code, error, duration in ms, whether the
    callback address was refused)."""
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "gig-dispatch-webhooks/1",
        "X-Dispatch-Event": delivery.event,
        "X-Dispatch-Delivery": str(delivery.id),
        "X-Dispatch-Signature": sign(body, delivery.ticket.integration.signing_secret),
    }
    status_code, error, refused = None, "", False
    started = time.monotonic()
    try:
        url, target_headers, extensions = pinned_target(delivery.url)
        with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as client:
            response = client.post(
                url,
                content=body,
                headers={**headers, **target_headers},
                extensions=extensions,
                follow_redirects=False,
            )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except RefusedAddress as exc:
        error, refused = f"Refused: {exc}"[:2000], True
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    return status_code, error, round((time.monotonic() - started) * 1000), refused


def _send_next_of_ticket(delivery: WebhookDelivery) -> None:
    """After a delivery is settled, send the next pending one of its ticket (it was waiting)."""
    following = (
        WebhookDelivery.objects.filter(
            ticket_id=delivery.ticket_id,
            state=WebhookDelivery.State.PENDING,
            sequence__gt=delivery.sequence,
        )
        .order_by("sequence")
        .first()
    )
    if following is not None:
        enqueue_on_commit(DELIVER_TASK, str(following.pk))


def webhook_attempt(*, delivery_id: uuid.UUID | str) -> WebhookDelivery | None:
    """Make one attempt at a due delivery and record it; None when no attempt was due.

    A failed attempt schedules the next after its back-off; the attempt after the last retry
    gives the delivery up (failed), and so does an attempt whose callback address is refused.
    """
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    status_code, error, duration_ms, refused = _post(delivery)
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        attempt = WebhookAttempt.objects.create(
            delivery=delivery, status_code=status_code, error=error, duration_ms=duration_ms
        )
        delivery.attempt_count += 1
        if not error:
            delivery.state = WebhookDelivery.State.DELIVERED
            delivery.delivered_at = attempt.attempted_at
            delivery.next_attempt_at = None
        elif refused or delivery.attempt_count > MAX_RETRIES:
            delivery.state = WebhookDelivery.State.FAILED
            delivery.next_attempt_at = None
        else:
            wait = backoff_seconds(delivery.attempt_count - 1)
            delivery.next_attempt_at = attempt.attempted_at + timedelta(seconds=wait)
            enqueue_on_commit(DELIVER_TASK, str(delivery.pk), countdown=wait)
        delivery.save(update_fields=["attempt_count", "state", "delivered_at", "next_attempt_at"])
        if delivery.state != WebhookDelivery.State.PENDING:
            _send_next_of_ticket(delivery)
    if error:
        logger.warning("Webhook %s to %s failed: %s", delivery.pk, delivery.url, error)
    return delivery


def webhooks_resend_due() -> list[uuid.UUID]:
    """Send a task for every pending delivery that is due and first in its ticket's line.

    The net under the tasks sent after commit and after each failure: a delivery whose task was
    lost is sent again within one period. A delivery that still has its task is harmless to
    send twice, since an attempt claims it first.
    """
    now = timezone.now()
    due = list(
        WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING)
        # No time at all: recorded before deliveries were scheduled, so due since then.
        .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True))
        .exclude(Exists(_pending_before(ticket=OuterRef("ticket"), sequence=OuterRef("sequence"))))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:RESEND_BATCH]
    )
    for delivery_id in due:
        enqueue_on_commit(DELIVER_TASK, str(delivery_id))
    return due


@transaction.atomic
def webhook_retry_now(*, delivery_id: uuid.UUID | str) -> WebhookDelivery | None:
    """A coordinator's retry: a pending or failed delivery is attempted at once.

    A failed delivery gets one more attempt and is failed again if that fails too (the bot's
    endpoint was presumably fixed before the retry). It still waits for an earlier pending
    delivery of its ticket. None when the delivery is delivered already. A retry while an
    attempt is in flight may send the delivery twice, which at-least-once allows (the bot
    de-duplicates by `delivery_id`).
    """
    delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
    if delivery is None or delivery.state == WebhookDelivery.State.DELIVERED:
        return None
    delivery.state = WebhookDelivery.State.PENDING
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["state", "next_attempt_at"])
    enqueue_on_commit(DELIVER_TASK, str(delivery.pk))
    return delivery
