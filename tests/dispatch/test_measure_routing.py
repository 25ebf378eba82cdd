"""The routing throughput command, run as an operator runs it: in its own process, on the
database server the tests use, in a scratch database it drops afterwards."""

import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from dispatch.management.commands.measure_routing import populate
from dispatch.models import DispatchPolicy
from tests.live import ROOT, platform_env
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def scratch_database_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


def test_measure_routing_routes_every_ticket_and_prints_offers_decided_per_second():
    # given
    command = [sys.executable, "manage.py", "measure_routing"]
    options = ["--tickets", "60", "--agents", "6", "--workers", "2"]

    # when
    result = subprocess.run(
        command + options,
        cwd=ROOT,
        env=platform_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )

    # then
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    scratch = re.fullmatch(
        rf"Routing on {connection.vendor} \(scratch database (.+), dropped\): 60 tickets, "
        r"6 agents with room for 10 each, 2 worker processes\.",
        lines[0],
    )
    assert scratch is not None, lines[0]
    assert lines[1] == "Offers made: 60; tickets left queued: 0."
    assert re.fullmatch(r"\d+\.\d offers decided per second \(60 in \d+\.\d\d s\)", lines[2])
    if connection.vendor == "postgresql":
        assert not scratch_database_exists(scratch.group(1))


def run_measure_routing(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "measure_routing", *options],
        cwd=ROOT,
        env=platform_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_with_ratings_and_a_history_routing_still_offers_every_ticket():
    # when
    result = run_measure_routing(
        "--tickets", "8", "--agents", "2", "--workers", "1", "--history", "30", "--rated", "12"
    )

    # then
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:4] == [
        "Each agent has 12 rated tickets in the quality window.",
        "Each agent resolved 30 tickets over the past year.",
        "Offers made: 8; tickets left queued: 0.",
    ]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--agents", "0"], "--tickets, --agents and --workers must be at least 1."),
        (["--history", "-1"], "--history and --rated must not be negative."),
        (["--rated", "-1"], "--history and --rated must not be negative."),
    ],
)
def test_bad_sizes_are_refused_before_any_database_is_made(options, error):
    # when
    result = run_measure_routing(*options)

    # then
    assert result.returncode == 1
    assert result.stderr.strip() == f"CommandError: {error}"


def test_a_history_is_that_many_resolved_tickets_per_agent_over_the_past_year_a_third_rated():
    # when
    populate(tickets=2, agents=3, seed=1, history=6)

    # then
    past = Ticket.objects.filter(external_id__startswith="past-")
    per_agent = past.values("agent").annotate(n=Count("pk")).values_list("n", flat=True)
    assert list(per_agent) == [6, 6, 6]
    assert set(past.values_list("status", flat=True)) == {Ticket.Status.RESOLVED}
    assert past.filter(csat_score__isnull=False).count() == 6
    assert not past.filter(resolved_at__lt=timezone.now() - timedelta(days=365)).exists()


def test_rated_is_that_many_rated_tickets_per_agent_in_the_quality_window():
    # when
    populate(tickets=2, agents=3, seed=1, rated=4)

    # then
    rated = Ticket.objects.filter(external_id__startswith="history-")
    per_agent = rated.values("agent").annotate(n=Count("pk")).values_list("n", flat=True)
    assert list(per_agent) == [4, 4, 4]
    assert not rated.filter(csat_score__isnull=True).exists()
    window_start = timezone.now() - timedelta(days=DispatchPolicy.load().quality_window_days)
    assert not rated.filter(resolved_at__lt=window_start).exists()
