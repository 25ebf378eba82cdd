"""What leaves first once a change commits: the work someone is waiting on (the routing of a
customer's escalation, the frame an agent watches for) goes ahead of the board's nudge, the
offer's timer and the bot's webhook."""

import pytest

from agents import push
from dispatch.celery import app as celery_app
from dispatch.services import DRAIN_TASK, EXPIRE_TASK, ROUTE_TASK, offer_accept, ticket_route
from tickets.services import ticket_escalate
from tickets.webhooks import DELIVER_TASK

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch) -> list[tuple]:
    """Everything handed to the channel layer and the broker after commit, in order, recorded
    instead of sent: (group, frame type) for a push, (task name,) for a task."""
    sent = []
    monkeypatch.setattr(
        push, "_group_send", lambda group, message: sent.append((group, message["payload"]["type"]))
    )
    for name in (ROUTE_TASK, EXPIRE_TASK, DRAIN_TASK, DELIVER_TASK):
        monkeypatch.setattr(
            celery_app.tasks[name],
            "apply_async",
            lambda args, countdown=None, name=name: sent.append((name,)),
        )
    return sent


def test_an_escalation_sends_its_routing_task_before_nudging_the_board(
    bot_factory, sent, django_capture_on_commit_callbacks
):
    # when
    with django_capture_on_commit_callbacks(execute=True):
        ticket_escalate(
            integration=bot_factory(), external_id="conv-1", language="en", customer_id="c"
        )

    # then
    assert sent == [(ROUTE_TASK,), (push.BOARD_GROUP, "ticket.event")]


def test_an_offer_reaches_its_agent_before_the_board_hears_and_the_timer_is_set(
    agent_factory, ticket_factory, sent, django_capture_on_commit_callbacks
):
    # given
    agent = agent_factory(online=True)
    ticket = ticket_factory()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        ticket_route(ticket_id=ticket.pk)

    # then
    assert sent == [
        (push.agent_group(agent.pk), "offer.created"),
        (push.BOARD_GROUP, "ticket.event"),
        (EXPIRE_TASK,),
    ]


def test_an_accepted_ticket_reaches_its_agent_before_the_bots_webhook_is_sent(
    agent_factory, ticket_factory, sent, django_capture_on_commit_callbacks
):
    # given: a ticket offered to an agent with room for one more, and a second ticket waiting
    agent = agent_factory(online=True, capacity=2)
    ticket = ticket_factory(callback_url="https://bot.example.com/hooks")
    offer = ticket_route(ticket_id=ticket.pk)
    ticket_factory()
    sent.clear()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent=agent)

    # then
    assert sent == [
        (push.BOARD_GROUP, "ticket.event"),
        (push.agent_group(agent.pk), "ticket.assigned"),
        (DELIVER_TASK,),
        (DRAIN_TASK,),
    ]
