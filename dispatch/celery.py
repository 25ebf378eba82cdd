import logging
import os

from celery import Celery
from django.db import transaction
from django.utils.functional import cached_property

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch.settings.base")


class DispatchCelery(Celery):
    """Celery with one result backend for the whole process.

    Celery builds a backend per thread, and building one scans every installed package's entry
    points: ~3 ms. Under ASGI each HTTP request runs in a thread of its own, so every request
    that sent a task paid it. No task here keeps a result (CELERY_TASK_IGNORE_RESULT and no
    result backend configured), so the backend is the stateless disabled one, safe to share.
    """

    @cached_property
    def backend(self):
        return self._get_backend()


app = DispatchCelery("dispatch")
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


def queue_waiting(queue: str) -> int:
    """How many tasks wait in `queue`, not yet taken by a worker (0 when the broker cannot be
    asked: the caller then does the work itself rather than count on tasks it cannot see)."""
    try:
        with app.connection_for_read() as connection:
            return connection.default_channel.queue_declare(queue=queue).message_count
    except Exception:
        logger.warning("Could not count the tasks waiting in %s", queue, exc_info=True)
        return 0
