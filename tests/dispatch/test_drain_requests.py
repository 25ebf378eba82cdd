"""Drain requests coalesce: a drain asked for and not started yet covers every later request for
the same agent, so a connect storm queues one drain per agent, not one per event."""

import pytest

from dispatch.celery import app as celery_app
from dispatch.services import DRAIN_TASK, agent_drain_started, agent_request_drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_drains(monkeypatch) -> list[tuple]:
    """The drain tasks handed to the broker, instead of being sent to it."""
    sent = []
    monkeypatch.setattr(
        celery_app.tasks[DRAIN_TASK],
        "apply_async",
        lambda args, countdown=None: sent.append(tuple(args)),
    )
    return sent


def test_requests_before_the_drain_starts_send_one_task(
    agent_factory, sent_drains, django_capture_on_commit_callbacks
):
    # given: two agents
    first, second = agent_factory(), agent_factory()

    # when: each is asked to drain three times before any drain starts
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            agent_request_drain(agent=first)
            agent_request_drain(agent=second)

    # then: one task per agent
    assert sent_drains == [(str(first.pk),), (str(second.pk),)]


def test_a_request_after_the_drain_started_sends_its_own(
    agent_factory, sent_drains, django_capture_on_commit_callbacks
):
    # given: a drain requested and then started
    agent = agent_factory()
    with django_capture_on_commit_callbacks(execute=True):
        agent_request_drain(agent=agent)
    agent_drain_started(agent_id=str(agent.pk))

    # when: the agent's capacity changes again
    with django_capture_on_commit_callbacks(execute=True):
        agent_request_drain(agent=agent)

    # then: a second drain is sent, since the first may have read the queue before
    assert sent_drains == [(str(agent.pk),), (str(agent.pk),)]


def test_a_rolled_back_request_claims_nothing(
    agent_factory, sent_drains, django_capture_on_commit_callbacks
):
    # given: a request whose transaction never commits
    agent = agent_factory()
    with django_capture_on_commit_callbacks(execute=False):
        agent_request_drain(agent=agent)

    # when: the agent is asked to drain in a transaction that commits
    with django_capture_on_commit_callbacks(execute=True):
        agent_request_drain(agent=agent)

    # then: that request sends its task
    assert sent_drains == [(str(agent.pk),)]
