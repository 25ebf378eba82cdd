"""Webhooks to the bot: signed, numbered per ticket, delivered at least once."""

import hashlib
import hmac
import json
import logging
import time
import uuid

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dispatch.celery import enqueue_on_commit

from .events import message_view, ticket_view
from .models import Message, Ticket, WebhookAttempt, WebhookDelivery

logger = logging.getLogger(__name__)

DELIVER_TASK = "tickets.deliver_webhook"


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
    payload = {
        "event": event,
        "delivery_id": str(delivery_id),
        "occurred_at": timezone.now().isoformat(),
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
    )
    enqueue_on_commit(DELIVER_TASK, str(delivery.id))
    return delivery


def webhook_attempt(*, delivery_id: uuid.UUID | str) -> WebhookDelivery | None:
    """POST one delivery once and record the attempt; None when it needs no attempt."""
    delivery = (
        WebhookDelivery.objects.select_related("ticket__integration").filter(pk=delivery_id).first()
    )
    if delivery is None or delivery.state == WebhookDelivery.State.DELIVERED:
        return None
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "gig-dispatch-webhooks/1",
        "X-Dispatch-Event": delivery.event,
        "X-Dispatch-Delivery": str(delivery.id),
        "X-Dispatch-Signature": sign(body, delivery.ticket.integration.signing_secret),
    }
    status_code, error = None, ""
    started = time.monotonic()
    try:
        response = httpx.post(
            delivery.url,
            content=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    duration_ms = round((time.monotonic() - started) * 1000)
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        WebhookAttempt.objects.create(
            delivery=delivery, status_code=status_code, error=error, duration_ms=duration_ms
        )
        delivery.attempt_count += 1
        if not error:
            delivery.state = WebhookDelivery.State.DELIVERED
            delivery.delivered_at = timezone.now()
        delivery.save(update_fields=["attempt_count", "state", "delivered_at"])
    if error:
        logger.warning("Webhook %s to %s failed: %s", delivery.pk, delivery.url, error)
    return delivery
