"""Drain requests: a capacity event asks for a drain only when, once it has committed, a
ticket waits and the agent has room for it, so a storm of connects or status changes with
nothing queued sends no task, nor does an accept that leaves its agent full."""

import pytest

from agents.models import Agent
from dispatch.celery import app as celery_app
from dispatch.services import DRAIN_TASK, agent_request_drain, offer_accept, ticket_route
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
    # given: two agents with room, and a ticket that is already with one of them
    first, second = agent_factory(online=True), agent_factory(online=True)
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
    # given: two agents with room and a queued ticket
    first, second = agent_factory(online=True), agent_factory(online=True)
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
    agent = agent_factory(online=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        agent_request_drain(agent=agent)

    # when: a ticket is queued before the change commits
    ticket_factory()
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()

    # then: the drain is sent
    assert sent_drains == [(str(agent.pk),)]


@pytest.mark.parametrize(
    ("status", "capacity", "drains"),
    [
        (Agent.Status.AVAILABLE, 2, 1),
        (Agent.Status.AVAILABLE, 1, 0),
        (Agent.Status.AWAY, 2, 0),
        (Agent.Status.OFFLINE, 2, 0),
    ],
)
def test_a_drain_is_sent_only_for_an_available_agent_with_room(
    status,
    capacity,
    drains,
    agent_factory,
    ticket_factory,
    sent_drains,
    django_capture_on_commit_callbacks,
):
    # given: an agent holding one ticket, and another ticket queued
    agent = agent_factory(online=True, capacity=capacity)
    Agent.objects.filter(pk=agent.pk).update(status=status)
    ticket_factory(status=Ticket.Status.ASSIGNED, agent=agent)
    ticket_factory()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        agent_request_drain(agent=agent)

    # then
    assert sent_drains == [(str(agent.pk),)] * drains


@pytest.mark.parametrize(("capacity", "drains"), [(1, 0), (2, 1)])
def test_an_accept_asks_for_a_drain_only_if_its_agent_still_has_room(
    capacity,
    drains,
    agent_factory,
    ticket_factory,
    sent_drains,
    django_capture_on_commit_callbacks,
):
    # given: an agent offered a ticket, and another ticket waiting
    agent = agent_factory(online=True, capacity=capacity)
    offer = ticket_route(ticket_id=ticket_factory().pk)
    ticket_factory()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent=agent)

    # then: an accept frees no slot, so an agent who was full stays full and is not drained
    assert sent_drains == [(str(agent.pk),)] * drains
