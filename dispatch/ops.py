"""Operations endpoints (contract section 7): liveness, readiness and Prometheus metrics.

The metrics are read from the database at scrape time rather than counted in process memory:
web processes and workers on any number of hosts change the state, and any one of them
answers the scrape, so only the database knows the right numbers.
"""

import logging
from datetime import timedelta

import psycopg
import redis
from django.conf import settings
from django.db import Error, connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

from agents.models import Agent
from tickets.models import Ticket, WebhookDelivery

from .models import Offer

logger = logging.getLogger(__name__)

# Upper bounds of the time-to-assign buckets, in seconds: the SLA targets (1, 2, 5, 15 min)
# fall on bucket edges.
TIME_TO_ASSIGN_BUCKETS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)

OFFER_OUTCOMES = [status for status in Offer.Status.values if status != Offer.Status.PENDING]
WEBHOOK_RESULTS = [WebhookDelivery.State.DELIVERED, WebhookDelivery.State.FAILED]

# How long /readyz waits for the database; load balancers' probes give up after a second or two.
READINESS_TIMEOUT_SECONDS = 1


@require_GET
def healthz(request) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def _database_is_up() -> bool:
    pool = getattr(connection, "pool", None)
    try:
        if pool is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        else:
            # Asked of the pool directly, with a probe's patience: through Django, a request
            # waits the pool's whole `timeout` for a connection when the database is gone.
            # Django opens its pool with the process's first connection; a probe that comes
            # before any other request opens it too, or a fresh process is never ready.
            pool.open()
            with pool.connection(timeout=READINESS_TIMEOUT_SECONDS) as pooled:
                pooled.execute("SELECT 1")
    # Error, not DatabaseError: a connection that broke under an earlier request raises
    # InterfaceError, which is not a DatabaseError. psycopg.Error: the pool's own, including
    # its time-out.
    except (Error, psycopg.Error):
        logger.warning("Readiness: the database does not answer", exc_info=True)
        return False
    return True


def _redis_is_up() -> bool:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        logger.warning("Readiness: Redis does not answer", exc_info=True)
        return False
    finally:
        client.close()
    return True


@require_GET
def readyz(request) -> JsonResponse:
    """200 when the database and Redis answer; else 503, naming the one that is down."""
    checks = {"database": _database_is_up(), "redis": _redis_is_up()}
    return JsonResponse(
        {name: "ok" if up else "down" for name, up in checks.items()},
        status=200 if all(checks.values()) else 503,
    )


def _counts(queryset, field: str) -> dict[str, int]:
    return dict(queryset.order_by().values_list(field).annotate(n=Count("pk")))


class DispatchCollector:
    """Prometheus collector that reads the platform's state from the database per scrape."""

    def collect(self):
        queue = GaugeMetricFamily(
            "dispatch_queue_depth",
            "Tickets waiting for an agent (queued or offered), by language.",
            labels=["language"],
        )
        waiting = Ticket.objects.filter(status__in=[Ticket.Status.QUEUED, Ticket.Status.OFFERED])
        for language, depth in sorted(_counts(waiting, "language").items()):
            queue.add_metric([language], depth)
        yield queue

        agents = GaugeMetricFamily(
            "dispatch_agents", "Active agents, by status.", labels=["status"]
        )
        by_status = _counts(Agent.objects.filter(account_state=Agent.AccountState.ACTIVE), "status")
        for status in Agent.Status.values:
            agents.add_metric([status], by_status.get(status, 0))
        yield agents

        offers = CounterMetricFamily(
            "dispatch_offers", "Offers answered or closed, by outcome.", labels=["outcome"]
        )
        by_outcome = _counts(Offer.objects.all(), "status")
        for outcome in OFFER_OUTCOMES:
            offers.add_metric([outcome], by_outcome.get(outcome, 0))
        yield offers

        yield self._time_to_assign()

        deliveries = CounterMetricFamily(
            "dispatch_webhook_deliveries",
            "Webhook deliveries settled, by result (failed: given up after every retry).",
            labels=["result"],
        )
        by_state = _counts(WebhookDelivery.objects.all(), "state")
        for result in WEBHOOK_RESULTS:
            deliveries.add_metric([result], by_state.get(result, 0))
        yield deliveries
        yield GaugeMetricFamily(
            "dispatch_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered nor given up.",
            value=by_state.get(WebhookDelivery.State.PENDING, 0),
        )

        yield GaugeMetricFamily(
            "dispatch_sla_breached_tickets",
            "Open tickets that waited past their priority's first-assignment target.",
            value=Ticket.objects.filter(status__in=Ticket.OPEN_STATUSES, sla_breached=True).count(),
        )

    def _time_to_assign(self) -> HistogramMetricFamily:
        wait = ExpressionWrapper(F("first_assigned_at") - F("created_at"), DurationField())
        bucket_counts = {
            f"le_{bound}": Count("pk", filter=Q(wait__lte=timedelta(seconds=bound)))
            for bound in TIME_TO_ASSIGN_BUCKETS
        }
        totals = (
            Ticket.objects.filter(first_assigned_at__isnull=False)
            .annotate(wait=wait)
            .aggregate(count=Count("pk"), sum=Sum("wait"), **bucket_counts)
        )
        buckets = [
            (floatToGoString(bound), totals[f"le_{bound}"]) for bound in TIME_TO_ASSIGN_BUCKETS
        ]
        buckets.append(("+Inf", totals["count"]))
        return HistogramMetricFamily(
            "dispatch_time_to_assign_seconds",
            "Seconds from escalation to the first assignment, of every ticket ever assigned.",
            buckets=buckets,
            sum_value=(totals["sum"] or timedelta()).total_seconds(),
        )


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DispatchCollector())


@require_GET
def metrics(request) -> HttpResponse:
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
