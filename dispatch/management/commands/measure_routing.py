"""Measure the routing engine alone: how many offers K routing workers decide per second.

A scratch database is created beside the configured one (same server, its name suffixed with
`_measure_routing`; a temporary file for SQLite), migrated, filled with M available agents and
N queued tickets, and dropped afterwards. K worker processes then take the tickets from one
shared queue, as Celery workers take route tasks from the routing queue, and each runs the
real routing step (`ticket_route`: lock, filter, score, re-check under lock, offer) on its own
database connection. The figure is offers made over the wall time from the start signal until
the last worker is done.

The agents all speak the tickets' language, hold every skill and together have room for every
ticket, so each step scores the whole pool: the heaviest choice routing makes. The tasks an
offer sends (its expiry timer) go to an in-memory broker, so nothing reaches a real worker for
a database that no longer exists; pushes to agents go to the configured channel layer, as in
production.
"""

import math
import multiprocessing
import random
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.utils import timezone

from agents.models import Agent, AgentConnection, AgentLanguage, AgentSkill, Skill
from dispatch.celery import app as celery_app
from dispatch.models import DispatchPolicy, Offer
from dispatch.services import ratings_count_afresh, ticket_route
from tickets.models import Ticket
from tickets.selectors import tickets_in_dispatch_order
from tickets.services import bot_integration_create

SKILLS = ["refunds", "billing", "technical"]
# Each agent's rated history, so that the quality part is computed from real rows.
RATED_TICKETS_PER_AGENT = (0, 8)
DONE = None


class Command(BaseCommand):
    help = (
        "Measure routing throughput (offers decided per second) with K worker processes, in a "
        "scratch database created beside the configured one and dropped afterwards."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tickets", type=int, default=1000)
        parser.add_argument("--agents", type=int, default=50)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument(
            "--history",
            type=int,
            default=0,
            help="Resolved tickets per agent over the past year, one in three rated.",
        )
        parser.add_argument(
            "--rated",
            type=int,
            help="Rated tickets per agent in the quality window (default: 0-8 at random).",
        )
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, tickets, agents, workers, history, rated, seed, **options):
        if min(tickets, agents, workers) < 1:
            raise CommandError("--tickets, --agents and --workers must be at least 1.")
        if history < 0 or (rated is not None and rated < 0):
            raise CommandError("--history and --rated must not be negative.")
        vendor = connection.vendor
        with scratch_database() as name:
            capacity = populate(
                tickets=tickets, agents=agents, history=history, rated=rated, seed=seed
            )
            with connection.cursor() as cursor:
                # Planned from the statistics of the rows just written, as a database that has
                # been running is: its autovacuum keeps them.
                cursor.execute("ANALYZE")
            made, seconds = route_concurrently(workers=workers)
            left = Ticket.objects.filter(status=Ticket.Status.QUEUED).count()
            over = [
                agent.pk
                for agent in Agent.objects.all()
                if Offer.objects.filter(agent=agent, status=Offer.Status.PENDING).count()
                > agent.capacity
            ]
        self.stdout.write(
            f"Routing on {vendor} (scratch database {name}, dropped): {tickets} tickets, "
            f"{agents} agents with room for {capacity} each, {workers} worker processes."
        )
        if rated is not None:
            self.stdout.write(f"Each agent has {rated} rated tickets in the quality window.")
        if history:
            self.stdout.write(f"Each agent resolved {history} tickets over the past year.")
        self.stdout.write(f"Offers made: {made}; tickets left queued: {left}.")
        if over:
            raise CommandError(f"{len(over)} agents were given more than their capacity.")
        self.stdout.write(
            f"{made / seconds:.1f} offers decided per second ({made} in {seconds:.2f} s)"
        )


class scratch_database:
    """A fresh, migrated database for the measurement; every connection uses it until exit."""

    def __enter__(self) -> str:
        settings_dict = connection.settings_dict
        self.original_name = settings_dict["NAME"]
        if connection.vendor == "sqlite":
            self.directory = tempfile.TemporaryDirectory(prefix="measure-routing-")
            name = str(Path(self.directory.name) / "scratch.sqlite3")
        else:
            name = f"{self.original_name}_measure_routing"
        settings_dict.setdefault("TEST", {})["NAME"] = name
        return connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)

    def __exit__(self, *exc) -> None:
        connections.close_all()
        connection.creation.destroy_test_db(self.original_name, verbosity=0)
        if connection.vendor == "sqlite":
            self.directory.cleanup()


def populate(
    *, tickets: int, agents: int, seed: int, history: int = 0, rated: int | None = None
) -> int:
    """M routable agents with a rated history and N queued tickets; returns each agent's
    capacity (enough for every ticket). Each agent has `rated` rated tickets in the quality
    window (a few at random by default; a busy pool's are hundreds). With `history`, each agent
    also resolved that many tickets over the past year, one in three rated, as a pool that has
    worked a while has: most of them outside the quality window."""
    rng = random.Random(seed)
    now = timezone.now()
    capacity = math.ceil(tickets / agents)
    policy = DispatchPolicy.load()
    # The run must not outlast presence: connections stay fresh and offers pending throughout.
    policy.heartbeat_timeout_seconds = 600
    policy.offer_timeout_seconds = 600
    policy.save()
    integration, _ = bot_integration_create(name="measure-routing")
    skills = [Skill.objects.create(slug=slug, name=slug.title()) for slug in SKILLS]
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"measure-{n}") for n in range(agents)
    )
    pool = Agent.objects.bulk_create(
        Agent(
            user=user,
            display_name=user.username,
            capacity=capacity,
            account_state=Agent.AccountState.ACTIVE,
            status=Agent.Status.AVAILABLE,
            pay_rate=Decimal(rng.randint(10, 30)),
            idle_since=now - timedelta(seconds=rng.randint(0, 3600)),
        )
        for user in users
    )
    AgentLanguage.objects.bulk_create(AgentLanguage(agent=agent, code="en") for agent in pool)
    AgentSkill.objects.bulk_create(
        AgentSkill(agent=agent, skill=skill, proficiency=rng.randint(3, 5))
        for agent in pool
        for skill in skills
    )
    AgentConnection.objects.bulk_create(
        AgentConnection(agent=agent, channel_name=f"measure-{agent.pk}", last_heartbeat_at=now)
        for agent in pool
    )

    def resolved(agent: Agent, external_id: str, days_ago: float, csat_score: int | None) -> Ticket:
        return Ticket(
            integration=integration,
            external_id=external_id,
            language="en",
            customer_id="measure",
            status=Ticket.Status.RESOLVED,
            agent=agent,
            resolved_at=now - timedelta(days=days_ago),
            csat_score=csat_score,
        )

    # One agent at a time, so that a busy pool's hundreds of thousands of rows are never all in
    # memory at once.
    for agent in pool:
        Ticket.objects.bulk_create(
            resolved(agent, f"history-{agent.pk}-{n}", rng.randint(0, 20), rng.randint(1, 5))
            for n in range(rated if rated is not None else rng.randint(*RATED_TICKETS_PER_AGENT))
        )
        Ticket.objects.bulk_create(
            resolved(
                agent,
                f"past-{agent.pk}-{n}",
                rng.uniform(0, 365),
                rng.randint(1, 5) if n % 3 == 0 else None,
            )
            for n in range(history)
        )
    queued = Ticket.objects.bulk_create(
        Ticket(
            integration=integration,
            external_id=f"queued-{n}",
            language="en",
            customer_id="measure",
            priority=rng.choice(Ticket.Priority.values),
        )
        for n in range(tickets)
    )
    Ticket.skills.through.objects.bulk_create(
        Ticket.skills.through(ticket=ticket, skill=skill)
        for ticket in queued
        for skill in rng.sample(skills, rng.randint(0, 2))
    )
    # The ratings were written in bulk, not one by one through the rating service.
    ratings_count_afresh(now=now, policy=policy)
    return capacity


def route_concurrently(*, workers: int) -> tuple[int, float]:
    """Route every queued ticket with `workers` processes; (offers made, seconds)."""
    policy = DispatchPolicy.load()
    queue_order = list(
        tickets_in_dispatch_order(
            Ticket.objects.filter(status=Ticket.Status.QUEUED),
            aging_seconds=policy.aging_seconds_per_priority,
        ).values_list("pk", flat=True)
    )
    # Fork, so the workers inherit the configured settings and the scratch database's name;
    # each opens its own connection, so none may be inherited open, pooled ones included.
    connections.close_all()
    if getattr(connection, "pool", None) is not None:
        connection.close_pool()
    context = multiprocessing.get_context("fork")
    route_queue = context.Queue()
    for ticket_id in queue_order:
        route_queue.put(ticket_id)
    for _ in range(workers):
        route_queue.put(DONE)
    start = context.Barrier(workers + 1)
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(route_queue, start, results)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    start.wait()
    began = time.monotonic()
    made = sum(results.get() for _ in processes)
    seconds = time.monotonic() - began
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise CommandError(f"A routing worker failed (exit code {process.exitcode}).")
    return made, seconds


def _worker(route_queue, start, results) -> None:
    celery_app.conf.broker_url = "memory://localhost/"
    made = 0
    start.wait()
    try:
        while (ticket_id := route_queue.get()) is not DONE:
            made += ticket_route(ticket_id=ticket_id) is not None
    finally:
        connections.close_all()
        results.put(made)
