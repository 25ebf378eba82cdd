"""A small, fast run of the benchmark against the real platform: it checks the counting, not
the timings."""

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import psutil
import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import connection

from agents.models import Agent, AgentConnection, AgentLanguage, AgentSkill
from agents.services import agent_suspend
from dispatch.bench import Bench, bench_setup, cpu_shares, platform_processes, pool_analyze
from dispatch.embedded_redis import free_port
from dispatch.management.commands.bench import Command as BenchCommand
from dispatch.models import Offer
from tests.factories import AgentFactory, TicketFactory, UserFactory
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
    assert result["lost_by_status"] == {}
    assert result["double_held_tickets"] == 0
    assert result["sockets_dropped"] == 0
    latency = result["latency_ms"]
    assert latency["escalation_http"]["n"] == 12
    assert latency["escalation_to_offer"]["n"] == 12
    assert latency["accept_to_assigned"]["n"] == 12
    assert {name: part["n"] for name, part in result["escalation_to_offer_parts_ms"].items()} == {
        "sent_to_ticket_written": 12,
        "ticket_to_offer_written": 12,
        "offer_written_to_socket": 12,
    }
    assert {name: floor["n"] for name, floor in result["floors_ms"].items()} == {
        "http_healthz": 3,
        "celery_noop": 3,
        "group_send": 3,
    }
    assert result["agents"] == 4
    assert set(result["peak_rss_mb"]) == {"server", "worker"}
    cpu = result["steady_cpu"]
    assert cpu["seconds"] >= 1
    assert cpu["machine_cores"] == psutil.cpu_count()
    assert 0 <= cpu["machine_busy_percent"] <= 100
    assert set(cpu["percent_of_one_core"]) == {"server", "worker", "benchmark"}
    # The server answered the escalations and the accepts in that second.
    assert cpu["percent_of_one_core"]["server"] > 0
    printed = capsys.readouterr().out
    assert "lost tickets: 0, double-held tickets: 0" in printed
    lines = printed.splitlines()
    offer_row = next(n for n, line in enumerate(lines) if line.startswith("escalation_to_offer "))
    assert [line[:35] for line in lines[offer_row + 1 : offer_row + 4]] == [
        f"{'  sent_to_ticket_written':<28}{12:>7}",
        f"{'  ticket_to_offer_written':<28}{12:>7}",
        f"{'  offer_written_to_socket':<28}{12:>7}",
    ]
    assert "CPU in the steady phase, % of one core: server " in printed
    assert "agents' sockets closed by the platform: 0" in printed
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


def test_lost_tickets_are_counted_with_where_they_stand():
    # given: three escalations the benchmark sent, of which one reached an agent; of the
    # other two, the platform still offers one and queues the other
    key, agents = bench_setup(agents=1, seed=1)
    bench = Bench(url="http://127.0.0.1:1", key=key, agents=agents, seed=1)
    assigned = TicketFactory(status=Ticket.Status.ASSIGNED)
    offered = TicketFactory(status=Ticket.Status.OFFERED)
    queued = TicketFactory(status=Ticket.Status.QUEUED)
    for ticket in (assigned, offered, queued):
        bench.m.record_sent(str(ticket.pk), sent=0.0)
    bench.m.assigned_at[str(assigned.pk)] = 1.0

    # when
    result = bench.report(throughput=0.0)

    # then
    assert result["lost_tickets"] == 2
    assert result["lost_by_status"] == {"offered": 1, "queued": 1}
    # No steady phase ran, so there are no CPU figures.
    assert result["steady_cpu"] is None


def test_escalation_to_offer_is_cut_where_the_ticket_and_its_first_offer_were_written():
    # given: a ticket sent at 10.000 s on the benchmark's clock, written 5 ms later, first
    # offered 7 ms after that (declined, a second offer came later), and received 3 ms after
    # its first offer was written; the wall clock runs 1,790,000,000 s ahead of the monotonic one
    key, agents = bench_setup(agents=1, seed=1)
    bench = Bench(url="http://127.0.0.1:1", key=key, agents=agents, seed=1)
    bench.m.wall_offset = 1_790_000_000.0
    sent = datetime.fromtimestamp(1_790_000_010.0, tz=UTC)
    ticket = TicketFactory()
    Ticket.objects.filter(pk=ticket.pk).update(created_at=sent + timedelta(milliseconds=5))
    agent = Agent.objects.get(pk=agents[0].id)
    for after, status in ((12, Offer.Status.DECLINED), (50, Offer.Status.PENDING)):
        offer = Offer.objects.create(ticket=ticket, agent=agent, status=status, expires_at=sent)
        Offer.objects.filter(pk=offer.pk).update(created_at=sent + timedelta(milliseconds=after))
    bench.m.record_sent(str(ticket.pk), sent=10.0)
    bench.m.record_offer(str(ticket.pk), at=10.015)

    # when
    parts = bench.report(throughput=0.0)["escalation_to_offer_parts_ms"]

    # then
    assert {name: (part["n"], part["p50"]) for name, part in parts.items()} == {
        "sent_to_ticket_written": (1, 5.0),
        "ticket_to_offer_written": (1, 7.0),
        "offer_written_to_socket": (1, 3.0),
    }


def planned_rows(table: str) -> int:
    """How many rows the planner's statistics say the table holds."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
            return int(cursor.fetchone()[0])
        # SQLite: each of the table's rows in sqlite_stat1 starts with its row count.
        cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s LIMIT 1", [table])
        return int(cursor.fetchone()[0].split()[0])


def test_the_benchmarks_pool_is_planned_from_its_statistics():
    # given: three connected agents speaking two languages each, with two skills each
    AgentFactory.create_batch(3, languages=["en", "sv"], skills=["refunds", "billing"], online=True)

    # when
    pool_analyze()

    # then the planner knows each table's rows, as a running platform's autovacuum keeps them
    assert {
        model._meta.db_table: planned_rows(model._meta.db_table)
        for model in (Agent, AgentLanguage, AgentSkill, AgentConnection)
    } == {
        "agents_agent": 3,
        "agents_agentlanguage": 6,
        "agents_agentskill": 6,
        "agents_agentconnection": 3,
    }


@pytest.mark.parametrize(
    ("busy", "flag"), [(89.9, ""), (90.0, " (saturated: the latencies include waiting for a core)")]
)
def test_the_table_shows_the_steady_phases_cpu_and_flags_a_saturated_machine(busy, flag):
    # given: a run whose steady phase kept the machine this busy
    key, agents = bench_setup(agents=1, seed=1)
    bench = Bench(url="http://127.0.0.1:1", key=key, agents=agents, seed=1)
    bench.steady_cpu = {
        "seconds": 30.0,
        "machine_cores": 2,
        "machine_busy_percent": busy,
        "percent_of_one_core": {"server": 91.7, "worker": 36.0, "benchmark": 18.5},
    }

    # when
    table = BenchCommand.table({**bench.report(throughput=0.0), "peak_rss_mb": {}})

    # then
    assert table.splitlines()[-1] == (
        "CPU in the steady phase, % of one core: server 91.7, worker 36.0, benchmark 18.5; "
        f"the machine's 2 cores {busy}% busy{flag}"
    )


def test_cpu_shares_count_only_the_processes_present_at_both_readings():
    # given: two server processes, one of which ended before the second reading, and a worker
    # that started after the first
    before = {"server": {10: 4.0, 11: 7.5}, "worker": {20: 1.0}}
    after = {"server": {10: 6.5}, "worker": {20: 1.25, 21: 9.0}}

    # when
    shares = cpu_shares(before, after, seconds=5.0)

    # then: (6.5 - 4.0) / 5 s, and (1.25 - 1.0) / 5 s, in percent of one core
    assert shares == {"server": 50.0, "worker": 5.0}


@pytest.mark.asyncio
async def test_a_socket_the_platform_closes_is_counted_as_dropped(live_platform):
    # given: one benchmark agent connected to the platform and answering its frames
    key, agents = await database_sync_to_async(bench_setup)(agents=1, seed=1)
    bench = Bench(url=live_platform.url, key=key, agents=agents, seed=1)
    ready = asyncio.Event()
    async with httpx.AsyncClient() as client:
        answering = asyncio.create_task(bench.run_agent(agents[0], client, ready))
        await asyncio.wait_for(ready.wait(), timeout=30)

        # when: a coordinator suspends the agent, which closes its sockets
        agent = await Agent.objects.aget(pk=agents[0].id)
        coordinator = await database_sync_to_async(UserFactory)(is_staff=True)
        await database_sync_to_async(agent_suspend)(agent=agent, by=coordinator)
        await asyncio.wait_for(answering, timeout=30)

    # then
    assert bench.m.sockets_dropped == 1
