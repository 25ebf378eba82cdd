"""The routing throughput command, run as an operator runs it: in its own process, on the
database server the tests use, in a scratch database it drops afterwards."""

import re
import subprocess
import sys

import pytest
from django.db import connection

from tests.live import ROOT, platform_env

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
