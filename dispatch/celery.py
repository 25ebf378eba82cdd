import logging
import os

from celery import Celery
from django.db import transaction

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch.settings.base")

app = Celery("dispatch")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def enqueue_on_commit(task_name: str, *args, countdown: float | None = None) -> None:
    """Send a task by name once the current transaction commits.

    A broker that cannot be reached is logged, not raised: the row that asked for the task is
    already committed, and the periodic sweep repairs whatever the lost task would have done.
    """

    def send() -> None:
        try:
            app.tasks[task_name].apply_async(args=args, countdown=countdown)
        except Exception:
            logger.exception("Could not enqueue %s%r; the sweep will repair it", task_name, args)

    transaction.on_commit(send)
