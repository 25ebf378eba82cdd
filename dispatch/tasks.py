"""Celery tasks of the routing engine: take ids, re-read, call a service.

Each is idempotent: a task that finds the state moved on (the ticket already offered, the
offer already answered) does nothing, so a redelivered or duplicated message is harmless.
"""

from celery import shared_task

from . import services


@shared_task(name=services.ROUTE_TASK)
def route_ticket(ticket_id: str) -> None:
    services.ticket_route(ticket_id=ticket_id)


@shared_task(name=services.DRAIN_TASK)
def drain_agent(agent_id: str) -> None:
    services.agent_drain(agent_id=agent_id)


@shared_task(name=services.EXPIRE_TASK)
def expire_offer(offer_id: str) -> None:
    services.offer_expire(offer_id=offer_id)


@shared_task(name="dispatch.sweep")
def sweep() -> None:
    services.dispatch_sweep()
