"""The sweep as the net under lost messages, and the Celery settings the routing tasks rely on.

A lost message is made for real: the escalation's routing task is sent from an on-commit
callback, and these tests capture that callback and never run it, so the task never exists."""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dispatch.celery import app as celery_app
from dispatch.celery import queue_waiting
from dispatch.models import DispatchPolicy, Offer
from dispatch.services import (
    DRAIN_TASK,
    EXPIRE_TASK,
    ROUTE_TASK,
    ROUTING_QUEUE,
    SWEEP_BATCH,
    dispatch_sweep,
)
from dispatch.tasks import ping
from tests.live import purge_routing_queue
from tickets.models import Ticket
from tickets.services import ticket_escalate

pytestmark = pytest.mark.django_db

SWEEP_TASK = "dispatch.sweep"
ROUTING_TASKS = [ROUTE_TASK, DRAIN_TASK, EXPIRE_TASK, SWEEP_TASK]


def test_the_next_sweep_offers_an_escalation_whose_routing_message_was_lost(
    bot, agent, django_capture_on_commit_callbacks
):
    # given: an escalation whose routing task is lost: its send, like every other on-commit
    # callback of the escalation, never runs
    with django_capture_on_commit_callbacks(execute=False):
        ticket, _ = ticket_escalate(
            integration=bot, external_id="lost-1", language="en", customer_id="cust-1"
        )
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.QUEUED

    # when: beat's next tick, which comes within the sweep interval, runs the sweep task
    entry = settings.CELERY_BEAT_SCHEDULE["sweep"]
    celery_app.tasks[entry["task"]].apply().get()

    # then
    assert (entry["task"], entry["schedule"]) == (SWEEP_TASK, 3.0)
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OFFERED
    assert list(ticket.offers.values_list("agent", "status")) == [(agent.pk, Offer.Status.PENDING)]


@pytest.fixture
def routing_task_waiting():
    """A task in the routing queue that no worker has taken yet, as when the workers are
    behind; the queue is emptied afterwards."""
    celery_app.send_task(ping.name, args=["waiting"])
    yield
    purge_routing_queue()


def test_the_sweep_leaves_queued_tickets_to_routing_tasks_waiting_for_a_worker(
    bot, agent, routing_task_waiting, django_capture_on_commit_callbacks
):
    # given: a ticket whose routing task is lost, and another task waiting for the worker
    with django_capture_on_commit_callbacks(execute=False):
        ticket, _ = ticket_escalate(
            integration=bot, external_id="behind-1", language="en", customer_id="cust-1"
        )
    assert queue_waiting(ROUTING_QUEUE) == 1

    # when
    made_while_waiting = dispatch_sweep()
    purge_routing_queue()
    made_once_empty = dispatch_sweep()

    # then: the sweep routed nothing while a task waited, and the lost ticket once none did
    assert (made_while_waiting, made_once_empty) == (0, 1)
    ticket.refresh_from_db()
    assert list(ticket.offers.values_list("agent", "status")) == [(agent.pk, Offer.Status.PENDING)]


def test_the_sweep_offers_a_lost_ticket_behind_a_head_of_tickets_nobody_can_take(
    bot, agent_factory, ticket_factory, django_capture_on_commit_callbacks
):
    # given: more queued tickets than one sweep routes that nobody can take (no one speaks
    # Finnish), and behind them an English escalation whose routing task was lost
    agent = agent_factory(online=True)
    for _ in range(SWEEP_BATCH + 1):
        ticket_factory(language="fi")
    with django_capture_on_commit_callbacks(execute=False):
        ticket, _ = ticket_escalate(
            integration=bot, external_id="behind", language="en", customer_id="cust-1"
        )

    # when
    dispatch_sweep()

    # then: the agent with room was drained and got it
    assert list(ticket.offers.values_list("agent", "status")) == [(agent.pk, Offer.Status.PENDING)]


def _sweep_queries(*, agents: int, agent_factory, ticket_factory) -> int:
    for _ in range(agents):
        agent_factory(online=True, languages=["sv"])
    for _ in range(SWEEP_BATCH + 1):
        ticket_factory(language="fi")
    with CaptureQueriesContext(connection) as captured:
        dispatch_sweep()
    return len(captured.captured_queries)


def test_a_sweep_does_bounded_work_whatever_the_backlog_and_the_pool(agent_factory, ticket_factory):
    # given: the policy in place (its first read creates it), and a backlog nobody online
    # can take, with a pool of agents with room
    DispatchPolicy.load()

    # when: the sweep runs with a pool just over the batch, then with three times as many
    # agents and a longer queue
    smaller = _sweep_queries(
        agents=SWEEP_BATCH + 1, agent_factory=agent_factory, ticket_factory=ticket_factory
    )
    larger = _sweep_queries(
        agents=2 * SWEEP_BATCH, agent_factory=agent_factory, ticket_factory=ticket_factory
    )

    # then: the same number of queries: at most SWEEP_BATCH tickets routed and SWEEP_BATCH
    # agents drained per run
    assert larger == smaller


def test_the_sweep_expires_an_offer_whose_timer_was_lost(bot, agent_factory, ticket_factory):
    # given: an offer overdue, its expiry task lost, and another agent who could take it
    first = agent_factory(online=True, idle_since=None)
    ticket = ticket_factory()
    celery_app.tasks[SWEEP_TASK].apply().get()
    Offer.objects.filter(ticket=ticket).update(expires_at="2000-01-01T00:00:00Z")
    second = agent_factory(online=True)

    # when
    celery_app.tasks[SWEEP_TASK].apply().get()

    # then
    assert list(ticket.offers.order_by("created_at").values_list("agent", "status")) == [
        (first.pk, Offer.Status.EXPIRED),
        (second.pk, Offer.Status.PENDING),
    ]


@pytest.mark.parametrize("task_name", ROUTING_TASKS)
def test_routing_tasks_run_on_their_own_queue_and_survive_a_lost_worker(task_name):
    # given
    task = celery_app.tasks[task_name]

    # when
    queue = celery_app.amqp.router.route({}, task_name)["queue"].name

    # then: acknowledged only after they ran, redelivered when the worker dies, time-limited
    assert queue == "routing"
    assert (task.acks_late, task.reject_on_worker_lost) == (True, True)
    assert (task.soft_time_limit, task.time_limit) == (20, 30)


def test_a_sweep_left_waiting_behind_a_backlog_expires_instead_of_running_late():
    # when
    task = celery_app.tasks[SWEEP_TASK]

    # then
    assert task.expires == 10
