"""A small, fast run of the benchmark against the real platform: it checks the counting, not
the timings."""

import json
import re

import pytest
from django.core.management import call_command

from dispatch.bench import platform_processes
from dispatch.embedded_redis import free_port
from tests.live import Platform, platform_env, wait_for
from tickets.models import Ticket

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

WORKER_STARTED = re.compile(r"Started server process \[(\d+)\]")


def test_a_small_benchmark_run_counts_every_escalation_once(live_platform, tmp_path, capsys):
    # given a platform and a benchmark of 4 agents with 12 escalations in all
    out = tmp_path / "bench.json"

    # when
    call_command(
        "bench",
        url=live_platform.url,
        agents=4,
        rate=4,
        duration=1,
        burst=8,
        concurrency=4,
        floor_samples=3,
        json_path=out,
    )

    # then every escalation was offered and assigned once, none lost or double-held
    result = json.loads(out.read_text())
    escalations = Ticket.objects.filter(integration__name__startswith="bench-")
    assert result["escalations"] == escalations.count() == 12
    assert result["http_errors"] == 0
    assert result["lost_tickets"] == 0
    assert result["double_held_tickets"] == 0
    latency = result["latency_ms"]
    assert latency["escalation_http"]["n"] == 12
    assert latency["escalation_to_offer"]["n"] == 12
    assert latency["accept_to_assigned"]["n"] == 12
    assert {name: floor["n"] for name, floor in result["floors_ms"].items()} == {
        "http_healthz": 3,
        "celery_noop": 3,
        "group_send": 3,
    }
    assert result["agents"] == 4
    assert set(result["peak_rss_mb"]) == {"server", "worker"}
    printed = capsys.readouterr().out
    assert "lost tickets: 0, double-held tickets: 0" in printed
    assert f"JSON written to {out}" in printed


def test_the_server_measured_includes_every_web_worker_process(tmp_path):
    # given a web server started with two worker processes, as WEB_CONCURRENCY asks
    platform = Platform(
        port=free_port(),
        env=platform_env(WEB_CONCURRENCY="2", STATIC_ROOT=str(tmp_path / "static")),
        workdir=tmp_path,
    )
    try:
        web = platform.start_web()
        workers = wait_for(
            lambda: (
                len(started := WORKER_STARTED.findall(web.log.read_text())) == 2
                and {int(pid) for pid in started}
            ),
            timeout=30,
            what="two web workers",
        )

        # when
        found = {process.pid for process in platform_processes(platform.url)["server"]}
    finally:
        platform.stop()

    # then the parent and both workers, whose command lines do not name the application
    assert {web.popen.pid, *workers} <= found
