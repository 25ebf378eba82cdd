"""Operations endpoints (contract section 7): /healthz, /readyz and /metrics."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.models import Agent
from dispatch.models import Offer
from tickets.models import Ticket, WebhookDelivery

from .live import Platform, free_port, platform_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_while_the_process_serves(client):
    # when
    response = client.get("/healthz")

    # then
    assert (response.status_code, response.content, response["Content-Type"]) == (
        200,
        b"ok",
        "text/plain",
    )


def test_readyz_is_200_when_the_database_and_redis_answer(client):
    # when
    response = client.get("/readyz")

    # then
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_naming_redis_when_redis_is_down(client, settings):
    # given a Redis address where nothing listens
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    # when
    response = client.get("/readyz")

    # then
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "redis": "down"}


@pytest.mark.live
@pytest.mark.postgres_only("connection pooling")
def test_a_fresh_web_process_is_ready_on_its_first_probe(tmp_path):
    # given a web process that has served nothing yet, so its connection pool is not open
    platform = Platform(
        port=free_port(),
        env=platform_env(STATIC_ROOT=str(tmp_path / "static")),
        workdir=tmp_path,
    )
    try:
        platform.start_web()

        # when a load balancer's probe is its first request
        response = httpx.get(f"{platform.url}/readyz", timeout=10)
    finally:
        platform.stop()

    # then it is ready
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok"}


@pytest.mark.live
def test_readyz_is_503_naming_the_database_when_it_is_down(tmp_path):
    # given a web process whose database does not answer
    platform = Platform(
        port=free_port(),
        env=platform_env(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
            STATIC_ROOT=str(tmp_path / "static"),
        ),
        workdir=tmp_path,
    )
    try:
        platform.start_web()

        # when
        response = httpx.get(f"{platform.url}/readyz", timeout=10)
        health = httpx.get(f"{platform.url}/healthz", timeout=10)
    finally:
        platform.stop()

    # then it is not ready, but alive
    assert response.status_code == 503
    assert response.json() == {"database": "down", "redis": "ok"}
    assert health.status_code == 200


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_read_the_platform_state(client, ticket_factory, agent_factory):
    # given waiting tickets in two languages, one of them past its SLA
    ticket_factory(language="sv", sla_breached=True)
    ticket_factory(language="sv")
    ticket_factory(language="en", status=Ticket.Status.OFFERED)
    # and agents: two available, one away, one offline, and a suspended one (not counted)
    agent_factory(status=Agent.Status.AVAILABLE)
    agent_factory(status=Agent.Status.AVAILABLE)
    away = agent_factory(status=Agent.Status.AWAY)
    agent_factory()
    agent_factory(account_state=Agent.AccountState.SUSPENDED, status=Agent.Status.AVAILABLE)
    # and three tickets first assigned after 4 s, 45 s and 200 s
    now = timezone.now()
    for seconds in (4, 45, 200):
        ticket = ticket_factory(language="en", status=Ticket.Status.RESOLVED)
        Ticket.objects.filter(pk=ticket.pk).update(
            created_at=now - timedelta(seconds=seconds), first_assigned_at=now
        )
    # and offers of every outcome
    assigned = Ticket.objects.filter(first_assigned_at__isnull=False).first()
    for status in ["accepted", "declined", "declined", "expired", "revoked", "pending"]:
        Offer.objects.create(
            ticket=ticket_factory(status=Ticket.Status.CANCELLED),
            agent=away,
            status=status,
            expires_at=now,
        )
    # and webhook deliveries
    for sequence, state in enumerate(["delivered", "delivered", "failed", "pending"], start=1):
        WebhookDelivery.objects.create(
            ticket=assigned,
            event="ticket.assigned",
            sequence=sequence,
            url="https://x",
            state=state,
        )

    # when
    samples = scrape(client)

    # then
    def value(name: str, **labels) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert (
        value("dispatch_queue_depth", language="sv"),
        value("dispatch_queue_depth", language="en"),
    ) == (2, 1)
    assert [value("dispatch_agents", status=s) for s in ("available", "away", "offline")] == [
        2,
        1,
        1,
    ]
    assert [
        value("dispatch_offers_total", outcome=o)
        for o in ("accepted", "declined", "expired", "revoked")
    ] == [1, 2, 1, 1]
    assert [
        value("dispatch_time_to_assign_seconds_bucket", le=le)
        for le in ("5.0", "10.0", "30.0", "60.0", "120.0", "300.0", "3600.0", "+Inf")
    ] == [1, 1, 1, 2, 2, 3, 3, 3]
    assert value("dispatch_time_to_assign_seconds_count") == 3
    assert value("dispatch_time_to_assign_seconds_sum") == 249
    assert [
        value("dispatch_webhook_deliveries_total", result=r) for r in ("delivered", "failed")
    ] == [2, 1]
    assert value("dispatch_webhook_deliveries_pending") == 1
    assert value("dispatch_sla_breached_tickets") == 1


def test_metrics_of_an_empty_platform_are_zero(client):
    # when
    samples = scrape(client)

    # then
    assert not [name for name, _ in samples if name == "dispatch_queue_depth"]
    assert samples[("dispatch_agents", (("status", "available"),))] == 0
    assert samples[("dispatch_offers_total", (("outcome", "accepted"),))] == 0
    assert samples[("dispatch_time_to_assign_seconds_count", ())] == 0
    assert samples[("dispatch_time_to_assign_seconds_sum", ())] == 0
    assert samples[("dispatch_sla_breached_tickets", ())] == 0
