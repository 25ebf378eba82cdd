"""Drain requests: a capacity event asks for a drain only when a ticket waits once it has
committed, so a storm of connects or status changes with nothing queued sends no task."""

import pytest

from dispatch.celery import app as celery_app
from dispatch.services import DRAIN_TASK, agent_request_drain
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_drains(monkeypatch) -> list[tuple]:
    """The drain tasks handed to the broker, recorded instead of sent."""
    sent = []
    monkeypatch.setattr(
        celery_app.tasks[DRAIN_TASK],
        "apply_async",
        lambda args, countdown=None: sent.append(tuple(args)),
    )
    return sent


def test_with_nothing_queued_no_drain_is_sent(
    agent_factory, ticket_factory, sent_drains, django_capture_on_commit_callbacks
):
    # given: two agents, and a ticket that is already with an agent
    first, second = agent_factory(), agent_factory()
    ticket_factory(status=Ticket.Status.ASSIGNED, agent=first)

    # when: both become able to take work
    with django_capture_on_commit_callbacks(execute=True):
        agent_request_drain(agent=first)
        agent_request_drain(agent=second)

    # then: no task, since no ticket waits
    assert sent_drains == []


def test_with_a_ticket_queued_each_request_sends_its_drain(
    agent_factory, ticket_factory, sent_drains, django_capture_on_commit_callbacks
):
    # given: two agents and a queued ticket
    first, second = agent_factory(), agent_factory()
    ticket_factory()

    # when: both become able to take work
    with django_capture_on_commit_callbacks(execute=True):
        agent_request_drain(agent=first)
        agent_request_drain(agent=second)

    # then: one drain each
    assert sent_drains == [(str(first.pk),), (str(second.pk),)]


def test_the_queue_is_read_after_the_change_commits(
    agent_factory, ticket_factory, sent_drains, django_capture_on_commit_callbacks
):
    # given: an agent asked to drain while nothing is queued yet
    agent = agent_factory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        agent_request_drain(agent=agent)

    # when: a ticket is queued before the change commits
    ticket_factory()
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()

    # then: the drain is sent
    assert sent_drains == [(str(agent.pk),)]
