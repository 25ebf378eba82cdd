from celery import shared_task

from .models import WebhookDelivery
from .webhooks import DELIVER_TASK, webhook_attempt

# 5 s doubling to a 10-minute ceiling: 16 retries span about 100 minutes, past the hour the
# contract promises.
MAX_RETRIES = 16
BACKOFF_START_SECONDS = 5
BACKOFF_CEILING_SECONDS = 600


def backoff_seconds(retries: int) -> int:
    return min(BACKOFF_START_SECONDS * 2**retries, BACKOFF_CEILING_SECONDS)


@shared_task(name=DELIVER_TASK, bind=True, max_retries=MAX_RETRIES)
def deliver_webhook(self, delivery_id: str) -> None:
    delivery = webhook_attempt(delivery_id=delivery_id)
    if delivery is None or delivery.state == WebhookDelivery.State.DELIVERED:
        return
    if self.request.retries >= MAX_RETRIES:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(state=WebhookDelivery.State.FAILED)
        return
    raise self.retry(countdown=backoff_seconds(self.request.retries))
