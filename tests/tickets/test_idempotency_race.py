"""Invariant 4 on PostgreSQL: replays of one escalation racing in separate processes (each its
own database connection, as separate web processes are) make exactly one ticket."""

import multiprocessing

import pytest
from django.conf import settings

from tickets.models import Ticket

from .. import live
from . import racers

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

RACERS = 6
ESCALATION = {
    "external_id": "conv-race",
    "language": "en",
    "customer": {"id": "cust-1"},
    "transcript": [{"role": "customer", "text": "A person, please."}],
}


def test_replays_racing_in_separate_processes_create_one_ticket(bot):
    # given processes that each hold the same escalation, released all at once
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=racers.escalate_when_released,
            kwargs={
                "database_url": live.test_database_url(),
                "redis_url": settings.REDIS_URL,
                "key": bot.api_key,
                "body": ESCALATION,
                "barrier": barrier,
                "results": results,
            },
        )
        for _ in range(RACERS)
    ]

    # when
    for process in processes:
        process.start()
    answers = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    # then one created the ticket, every other got the same ticket back, and nothing doubled
    ticket = Ticket.objects.get()
    assert sorted(answers) == sorted(
        [(201, str(ticket.id))] + [(200, str(ticket.id))] * (RACERS - 1)
    )
    assert ticket.messages.count() == 1
    assert ticket.events.filter(kind="escalated").count() == 1
