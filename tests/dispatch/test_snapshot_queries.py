"""The `hello` snapshot reads a fixed number of queries, however many offers the agent has."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dispatch.services import agent_snapshot, ticket_route
from tickets.models import Message

pytestmark = pytest.mark.django_db


def queries_for_snapshot(agent) -> int:
    with CaptureQueriesContext(connection) as captured:
        agent_snapshot(agent=agent)
    return len(captured.captured_queries)


def offer_tickets(ticket_factory, count: int) -> None:
    for _ in range(count):
        ticket = ticket_factory(skills=["refunds"], message_count=2)
        Message.objects.bulk_create(
            Message(
                ticket=ticket,
                position=n,
                role="customer",
                text=f"line {n}",
                sent_at=ticket.created_at,
            )
            for n in (1, 2)
        )
        ticket_route(ticket_id=ticket.pk)


def test_the_snapshot_does_not_query_per_offer(agent_factory, ticket_factory):
    # given an agent with one pending offer, then the same with three
    agent = agent_factory(capacity=5, skills=["refunds"], online=True)
    offer_tickets(ticket_factory, 1)
    with_one = queries_for_snapshot(agent)

    # when two more offers arrive
    offer_tickets(ticket_factory, 2)

    # then the snapshot costs exactly as many queries, and lists each offer's transcript
    assert queries_for_snapshot(agent) == with_one
    snapshot = agent_snapshot(agent=agent)
    assert [[m["text"] for m in o["ticket"]["transcript"]] for o in snapshot["offers"]] == [
        ["line 1", "line 2"]
    ] * 3
