"""Celery tasks of the routing engine: take ids, re-read, call a service.

Each is idempotent: a task that finds the state moved on (the ticket already offered, the
offer already answered) does nothing, so a redelivered or duplicated message is harmless.
"""

import redis
from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from . import presence, services
from .models import DispatchPolicy

# The routing tasks' delivery guarantees, stated here rather than only inherited from the
# settings: acknowledged after they ran, so a worker that dies mid-task leaves the message to
# be redelivered (they are idempotent, so a second run is harmless); a hard time limit so that
# a stuck step cannot hold its row locks for long; and retries only for what may pass (a lost
# database connection, a deadlock victim).
ROUTING_TASK = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": 20,
    "time_limit": 30,
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "max_retries": 3,
}

# A sweep that waited behind a backlog longer than this is stale: a fresher one follows within
# seconds, so it is dropped rather than run late.
SWEEP_EXPIRES_SECONDS = 10


@shared_task(name=services.ROUTE_TASK, **ROUTING_TASK)
def route_ticket(ticket_id: str) -> None:
    services.ticket_route(ticket_id=ticket_id)


@shared_task(name=services.DRAIN_TASK, **ROUTING_TASK)
def drain_agent(agent_id: str) -> None:
    services.agent_drain(agent_id=agent_id)


@shared_task(name=services.EXPIRE_TASK, **ROUTING_TASK)
def expire_offer(offer_id: str) -> None:
    services.offer_expire(offer_id=offer_id)


@shared_task(name="dispatch.sweep", expires=SWEEP_EXPIRES_SECONDS, **ROUTING_TASK)
def sweep() -> None:
    services.dispatch_sweep()


@shared_task(name=presence.PRESENCE_SWEEP_TASK)
def presence_sweep() -> None:
    presence.presence_sweep()


@shared_task(name="dispatch.ping")
def ping(reply_key: str) -> None:
    """A no-op through the broker and a routing worker, answered on a Redis list: the
    benchmark's floor for a task's round trip, and a check that routing workers are alive."""
    with redis.Redis.from_url(settings.REDIS_URL) as client:
        client.rpush(reply_key, "pong")
        client.expire(reply_key, 60)


@shared_task(name="dispatch.board_sample")
def board_sample() -> None:
    """Record the queue depth and the agents online for the live board's history charts."""
    services.board_sample_take(now=timezone.now(), policy=DispatchPolicy.load())
