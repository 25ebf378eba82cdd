"""Celery tasks of the webhooks (the `webhooks` queue): take ids, call a service.

Both are idempotent: an attempt claims its delivery first, so a duplicated or early task does
nothing.
"""

from celery import shared_task

from .webhooks import DELIVER_TASK, RESEND_TASK, webhook_attempt, webhooks_resend_due


@shared_task(name=DELIVER_TASK)
def deliver_webhook(delivery_id: str) -> None:
    webhook_attempt(delivery_id=delivery_id)


@shared_task(name=RESEND_TASK)
def resend_due_webhooks() -> None:
    webhooks_resend_due()
