"""The end-to-end benchmark: escalation over HTTP → offer on an agent's socket, measured
against the floors of the same stack in the same run.

It creates its own bot key and agents, connects every agent over a real websocket, has each
accept an offer on receipt and resolve it a few seconds later, sends escalations at a steady
rate and then in a burst, and reports latencies, throughput, lost and double-held tickets, the
peak memory of the platform's processes, and the CPU each of them, this command and the whole
machine used in the steady phase.
"""

import asyncio
import contextlib
import itertools
import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psutil
import redis.asyncio as aioredis
import websockets
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Min
from knox.models import AuthToken

from agents.models import Agent, AgentConnection, AgentLanguage, AgentSkill, Skill
from agents.push import agent_group
from tickets.models import Ticket
from tickets.services import bot_integration_create

from .celery import app as celery_app
from .models import Offer

# A realistic mix: most demand in English, the rest spread.
LANGUAGES = [("en", 0.5), ("sv", 0.2), ("es", 0.15), ("de", 0.15)]
SKILL_SETS = [([], 0.4), (["refunds"], 0.25), (["billing"], 0.2), (["technical"], 0.15)]
RESOLVE_AFTER_SECONDS = (2.0, 4.0)
PING_TASK = "dispatch.ping"
# Past this, the machine had no core to spare: latencies then include waiting for one.
SATURATED_PERCENT = 90
# A steady phase shorter than this (none, for a sockets-only run) reports no CPU figures.
CPU_WINDOW_SECONDS = 1.0


def pick(rng: random.Random, weighted: list) -> object:
    return rng.choices([value for value, _ in weighted], [weight for _, weight in weighted])[0]


def percentiles(samples: list[float]) -> dict:
    """p50/p95/p99/max in milliseconds (nearest-rank), with the sample count."""
    if not samples:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[max(0, min(len(ordered) - 1, round(p * len(ordered)) - 1))] * 1000, 2)

    return {
        "n": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1] * 1000, 2),
    }


@dataclass
class BenchAgent:
    id: str
    token: str
    languages: list[str]
    skills: list[str]
    capacity: int


# Agents opening their sockets at once, as a fleet of browsers reconnecting with jitter does:
# a thousand handshakes in the same instant would measure a storm no server sees, and starve
# the sockets already open of their keep-alive pings.
CONNECTS_IN_FLIGHT = 50

# The bench's bot may send this many requests a minute: far above what any run sends.
BENCH_REQUESTS_PER_MINUTE = 10_000_000


def bench_setup(*, agents: int, seed: int) -> tuple[str, list[BenchAgent]]:
    """Create a bot key and `agents` active agents with tokens; returns the key and them."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    skills = {
        slug: Skill.objects.get_or_create(slug=slug, defaults={"name": slug.title()})[0]
        for slug in ("refunds", "billing", "technical")
    }
    created: list[BenchAgent] = []
    with transaction.atomic():
        integration, key = bot_integration_create(name=f"bench-{run}")
        # The burst measures the platform, not the bot's rate limit.
        integration.requests_per_minute = BENCH_REQUESTS_PER_MINUTE
        integration.save(update_fields=["requests_per_minute"])
        users = get_user_model().objects.bulk_create(
            get_user_model()(username=f"bench-{run}-{n}", password="!") for n in range(agents)
        )
        agent_rows = Agent.objects.bulk_create(
            Agent(
                user=user,
                display_name=f"Bench {n}",
                capacity=rng.choice([2, 3]),
                account_state=Agent.AccountState.ACTIVE,
            )
            for n, user in enumerate(users)
        )
        tokens = [AuthToken.objects.create(user=user)[1] for user in users]
        languages, agent_skills = [], []
        for agent in agent_rows:
            # Everyone speaks English; most speak one more language of the mix.
            codes = sorted({"en", pick(rng, LANGUAGES)})
            languages += [AgentLanguage(agent=agent, code=code) for code in codes]
            slugs = sorted(rng.sample(list(skills), rng.randint(1, 3)))
            agent_skills += [
                AgentSkill(agent=agent, skill=skills[slug], proficiency=rng.randint(3, 5))
                for slug in slugs
            ]
            created.append(BenchAgent(str(agent.pk), "", codes, slugs, agent.capacity))
        AgentLanguage.objects.bulk_create(languages)
        AgentSkill.objects.bulk_create(agent_skills)
    for bench_agent, token in zip(created, tokens, strict=True):
        bench_agent.token = token
    return key, created


def pool_analyze() -> None:
    """Refresh the planner's statistics of the tables the benchmark filled: its agents, their
    languages, skills and sockets. A platform that has been running has them, kept by the
    database's autovacuum; a pool made in a second is planned as tables never analyzed are
    until the autovacuum comes round, a minute later or more: routing steps over 1,000 agents
    then took about a millisecond longer (12.4-13.4 ms from the ticket's insert to its offer's,
    p50, against 11.3-11.9, alternated three times at 10/s)."""
    with connection.cursor() as cursor:
        for model in (Agent, AgentLanguage, AgentSkill, AgentConnection):
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


@dataclass
class Measurements:
    escalation_http: list[float] = field(default_factory=list)
    escalation_to_offer: list[float] = field(default_factory=list)
    accept_to_assigned: list[float] = field(default_factory=list)
    resolve_to_next_offer: list[float] = field(default_factory=list)
    floor_http: list[float] = field(default_factory=list)
    floor_celery: list[float] = field(default_factory=list)
    floor_group_send: list[float] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    offered_at: dict[str, float] = field(default_factory=dict)
    offered_tickets: set[str] = field(default_factory=set)
    assigned_to: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    assigned_at: dict[str, float] = field(default_factory=dict)
    escalated: set[str] = field(default_factory=set)
    http_errors: int = 0
    # Agents' sockets the platform closed before the run ended.
    sockets_dropped: int = 0
    # The wall clock less the monotonic one, which the times above are read from: the
    # platform's rows carry wall-clock times. Both advance together but for a step of the wall
    # clock (a manual change; NTP only slews it), which a run of a minute seldom meets.
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())

    def record_offer(self, ticket_id: str, at: float) -> None:
        self.offered_tickets.add(ticket_id)
        if ticket_id in self.offered_at:
            return
        self.offered_at[ticket_id] = at
        if ticket_id in self.sent_at:
            self.escalation_to_offer.append(at - self.sent_at[ticket_id])

    def record_sent(self, ticket_id: str, sent: float) -> None:
        self.sent_at[ticket_id] = sent
        self.escalated.add(ticket_id)
        if ticket_id in self.offered_at:
            self.escalation_to_offer.append(self.offered_at[ticket_id] - sent)


class Bench:
    def __init__(self, *, url: str, key: str, agents: list[BenchAgent], seed: int) -> None:
        self.url = url.rstrip("/")
        self.ws_url = self.url.replace("http", "ws", 1) + "/ws/agent/"
        self.key = key
        self.agents = agents
        self.rng = random.Random(seed)
        self.m = Measurements()
        self.sockets: dict[str, websockets.ClientConnection] = {}
        self.ready = 0
        self.group_pings: dict[str, asyncio.Future] = {}
        self.resolved_at: dict[str, float] = {}
        self.tasks: set[asyncio.Task] = set()
        self.closing = False
        self.connect_slots = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        self.steady_cpu: dict | None = None

    def spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_agent(self, agent: BenchAgent, client: httpx.AsyncClient, ready: asyncio.Event):
        headers = {"Authorization": f"Token {agent.token}"}
        async with self.connect_slots:
            socket = await websockets.connect(
                self.ws_url, additional_headers=headers, max_queue=None, open_timeout=60
            )
            hello = json.loads(await socket.recv())
        async with socket:
            self.sockets[agent.id] = socket
            assert hello["type"] == "hello", hello
            await socket.send(json.dumps({"type": "status.set", "status": "available"}))
            self.ready += 1
            if self.ready == len(self.agents):
                ready.set()
            try:
                await self.answer_frames(agent, socket, client, headers)
            except websockets.ConnectionClosed:
                if not self.closing:
                    self.m.sockets_dropped += 1

    async def answer_frames(self, agent: BenchAgent, socket, client, headers) -> None:
        """Accept every offer on receipt and resolve each ticket a few seconds later."""
        accept_sent: dict[str, float] = {}
        heartbeat = time.monotonic()
        while not self.closing:
            try:
                frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=15))
            except TimeoutError:
                frame = {"type": "idle"}
            now = time.monotonic()
            if now - heartbeat > 20:
                heartbeat = now
                await socket.send(json.dumps({"type": "heartbeat"}))
            kind = frame["type"]
            if kind == "offer.created":
                ticket_id = frame["offer"]["ticket"]["id"]
                freed_at = self.resolved_at.pop(agent.id, None)
                sent = self.m.sent_at.get(ticket_id)
                # Backlog drain: the first offer of a ticket that was already waiting when
                # this agent freed a slot.
                if (
                    freed_at is not None
                    and sent is not None
                    and sent < freed_at
                    and ticket_id not in self.m.offered_tickets
                ):
                    self.m.resolve_to_next_offer.append(now - freed_at)
                self.m.record_offer(ticket_id, now)
                accept_sent[ticket_id] = time.monotonic()
                await socket.send(
                    json.dumps({"type": "offer.accept", "offer_id": frame["offer"]["id"]})
                )
            elif kind == "ticket.assigned":
                ticket_id = frame["ticket"]["id"]
                if ticket_id in accept_sent:
                    self.m.accept_to_assigned.append(now - accept_sent.pop(ticket_id))
                self.m.assigned_to[ticket_id].add(agent.id)
                self.m.assigned_at.setdefault(ticket_id, now)
                self.spawn(self.resolve_later(agent, ticket_id, client, headers))
            elif kind == "bench.ping":
                future = self.group_pings.pop(frame["id"], None)
                if future is not None and not future.done():
                    future.set_result(now)

    async def resolve_later(self, agent: BenchAgent, ticket_id: str, client, headers) -> None:
        await asyncio.sleep(self.rng.uniform(*RESOLVE_AFTER_SECONDS))
        response = await client.post(
            f"{self.url}/api/v1/agent/tickets/{ticket_id}/resolve/",
            json={"outcome": "solved"},
            headers=headers,
        )
        if response.status_code == 200:
            self.resolved_at[agent.id] = time.monotonic()
        else:
            self.m.http_errors += 1

    async def escalate(self, client: httpx.AsyncClient, n: int) -> None:
        # The demand follows the mix, drawn from what some agent can take, so that "lost"
        # means lost, not unservable, even with a handful of agents.
        language = pick(self.rng, LANGUAGES)
        skills = pick(self.rng, SKILL_SETS)
        if not any(
            language in agent.languages and set(skills) <= set(agent.skills)
            for agent in self.agents
        ):
            agent = self.rng.choice(self.agents)
            language, skills = agent.languages[-1], agent.skills[:1]
        body = {
            "external_id": f"bench-{uuid.uuid4().hex}",
            "language": language,
            "skills": skills,
            "priority": self.rng.choice(["low", "normal", "normal", "high", "urgent"]),
            "customer": {"id": f"bench-customer-{n}", "name": "Bench"},
            "summary": "Benchmark escalation.",
            "transcript": [{"role": "customer", "text": "I'd like to talk to a person."}],
        }
        sent = time.monotonic()
        response = await client.post(
            f"{self.url}/api/v1/escalations/",
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
        )
        self.m.escalation_http.append(time.monotonic() - sent)
        if response.status_code != 201:
            self.m.http_errors += 1
            return
        self.m.record_sent(response.json()["id"], sent)

    async def steady(self, client, *, rate: float, duration: float) -> None:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < duration:
            self.spawn(self.escalate(client, n))
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))

    async def burst(self, client, *, count: int, concurrency: int) -> float:
        """Send `count` escalations as fast as the platform takes them; returns assignments/s."""
        before = set(self.m.escalated)
        semaphore = asyncio.Semaphore(concurrency)
        started = time.monotonic()

        async def one(n: int) -> None:
            async with semaphore:
                await self.escalate(client, n)

        await asyncio.gather(*(one(n) for n in range(count)))
        burst_ids = self.m.escalated - before
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not burst_ids <= set(self.m.assigned_at):
            await asyncio.sleep(0.05)
        done = [self.m.assigned_at[t] for t in burst_ids if t in self.m.assigned_at]
        return round(len(done) / (max(done) - started), 1) if done else 0.0

    async def measure_floors(self, client: httpx.AsyncClient, *, samples: int) -> None:
        for _ in range(samples):
            started = time.monotonic()
            await client.get(f"{self.url}/healthz")
            self.m.floor_http.append(time.monotonic() - started)
        broker = aioredis.from_url(settings.REDIS_URL, socket_timeout=None)
        try:
            for _ in range(samples):
                reply = f"bench:ping:{uuid.uuid4().hex}"
                started = time.monotonic()
                celery_app.send_task(PING_TASK, args=[reply])
                await broker.blpop([reply], timeout=60)
                self.m.floor_celery.append(time.monotonic() - started)
        finally:
            await broker.aclose()
        layer = get_channel_layer()
        agent = self.agents[0]
        for _ in range(samples):
            ping_id = uuid.uuid4().hex
            future = asyncio.get_running_loop().create_future()
            self.group_pings[ping_id] = future
            started = time.monotonic()
            await layer.group_send(
                agent_group(agent.id),
                {"type": "agent.event", "payload": {"type": "bench.ping", "id": ping_id}},
            )
            arrived = await asyncio.wait_for(future, timeout=10)
            self.m.floor_group_send.append(arrived - started)

    async def run(self, *, rate, duration, burst, concurrency, floor_samples, on_phase) -> dict:
        limits = httpx.Limits(max_connections=concurrency + 20)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            ready = asyncio.Event()
            for agent in self.agents:
                self.spawn(self.run_agent(agent, client, ready))
            on_phase(f"connecting {len(self.agents)} agents")
            await asyncio.wait_for(ready.wait(), timeout=300)
            await asyncio.sleep(1)
            await database_sync_to_async(pool_analyze)()
            on_phase("measuring the floors")
            await self.measure_floors(client, samples=floor_samples)
            on_phase(f"steady: {rate}/s for {duration} s")
            meter = CpuMeter(self.url)
            await self.steady(client, rate=rate, duration=duration)
            self.steady_cpu = meter.read()
            on_phase(f"burst: {burst} escalations, {concurrency} in flight")
            throughput = await self.burst(client, count=burst, concurrency=concurrency)
            on_phase("waiting for the last tickets")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self.m.escalated <= set(self.m.assigned_at):
                await asyncio.sleep(0.1)
            self.closing = True
            for socket in self.sockets.values():
                await socket.close()
            for task in list(self.tasks):
                task.cancel()
        return throughput

    def report(self, throughput: float) -> dict:
        """The figures of a finished run (reads the database: call it outside the event loop)."""
        m = self.m
        floors = {
            "http_healthz": percentiles(m.floor_http),
            "celery_noop": percentiles(m.floor_celery),
            "group_send": percentiles(m.floor_group_send),
        }
        floor_sum = sum(f["p50"] or 0 for f in floors.values())
        offer = percentiles(m.escalation_to_offer)
        lost = m.escalated - set(m.assigned_at)
        double_in_db = (
            Offer.objects.filter(
                ticket_id__in=m.escalated, status=Offer.Status.ACCEPTED, released_at__isnull=True
            )
            .values("ticket_id")
            .annotate(holders=Count("pk"))
            .filter(holders__gt=1)
            .count()
        )
        return {
            "agents": len(self.agents),
            "escalations": len(m.escalated),
            "http_errors": m.http_errors,
            "latency_ms": {
                "escalation_http": percentiles(m.escalation_http),
                "escalation_to_offer": offer,
                "accept_to_assigned": percentiles(m.accept_to_assigned),
                "resolve_to_next_offer": percentiles(m.resolve_to_next_offer),
            },
            "escalation_to_offer_parts_ms": escalation_to_offer_parts(m),
            "floors_ms": floors,
            "floor_sum_p50_ms": round(floor_sum, 2),
            "offer_p50_over_floor_sum": round(offer["p50"] / floor_sum, 2)
            if offer["p50"] and floor_sum
            else None,
            "burst_assignments_per_second": throughput,
            "lost_tickets": len(lost),
            # Where the lost tickets stand in the database: waiting (queued, offered) or held
            # by an agent whose assignment never reached the benchmark.
            "lost_by_status": dict(
                Ticket.objects.filter(pk__in=lost)
                .values_list("status")
                .annotate(tickets=Count("pk"))
                .order_by("status")
            ),
            "sockets_dropped": m.sockets_dropped,
            "double_held_tickets": sum(len(a) > 1 for a in m.assigned_to.values()) + double_in_db,
            "steady_cpu": self.steady_cpu,
        }


def escalation_to_offer_parts(m: Measurements) -> dict[str, dict]:
    """Each offered ticket's escalation → offer, cut where the platform wrote its rows: from
    sending the request to the ticket's insert (HTTP, authentication, validation), from there
    to the insert of its first offer (the rest of the request's transaction, the routing
    task's trip through the broker, the routing step up to its choice), and from there to the
    offer's frame on an agent's socket (the rest of the offer's transaction, the channel
    layer). Per ticket the three add up to its escalation → offer; their percentiles need not.
    The rows' times are the platform's wall clock, so the parts hold when the benchmark runs on
    the platform's machine, as its CPU and memory figures need it to."""
    parts: dict[str, list[float]] = {
        "sent_to_ticket_written": [],
        "ticket_to_offer_written": [],
        "offer_written_to_socket": [],
    }
    written = (
        Ticket.objects.filter(pk__in=m.sent_at.keys() & m.offered_at.keys())
        .annotate(first_offer_at=Min("offers__created_at"))
        .values_list("pk", "created_at", "first_offer_at")
    )
    for pk, ticket_at, offer_at in written:
        sent = m.sent_at[str(pk)] + m.wall_offset
        received = m.offered_at[str(pk)] + m.wall_offset
        parts["sent_to_ticket_written"].append(ticket_at.timestamp() - sent)
        parts["ticket_to_offer_written"].append((offer_at - ticket_at).total_seconds())
        parts["offer_written_to_socket"].append(received - offer_at.timestamp())
    return {name: percentiles(samples) for name, samples in parts.items()}


def platform_processes(url: str) -> dict[str, list[psutil.Process]]:
    """The server and worker processes of the platform under test, found by their command
    lines: the ASGI server serving `url`'s port with its worker processes (`WEB_CONCURRENCY`),
    and the Celery workers on this machine that use the same broker as this command
    (`REDIS_URL`), so that other platforms running here, a test suite's for one, are not
    counted."""
    port = str(urlsplit(url).port or 80)
    found: dict[str, list[psutil.Process]] = {"server": [], "worker": []}
    for process in psutil.process_iter(["cmdline"]):
        arguments = process.info["cmdline"] or []
        line = " ".join(arguments)
        with contextlib.suppress(psutil.Error):
            if "dispatch.asgi:application" in line and _port_argument(arguments) == port:
                # Uvicorn's workers are spawned, with a command line of their own.
                found["server"] += [process, *process.children(recursive=True)]
            elif (
                "celery" in line
                and " worker" in line
                and "dispatch" in line
                and process.environ().get("REDIS_URL") == settings.REDIS_URL
            ):
                found["worker"].append(process)
    return found


def cpu_seconds_used(processes: dict[str, list[psutil.Process]]) -> dict[str, dict[int, float]]:
    """The CPU seconds (user and system) each process has used so far, by kind and pid; a
    process that has ended is left out."""
    used: dict[str, dict[int, float]] = {kind: {} for kind in processes}
    for kind, members in processes.items():
        for process in members:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used[kind][process.pid] = times.user + times.system
    return used


def cpu_shares(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], *, seconds: float
) -> dict[str, float]:
    """The percent of one core each kind of process used between two readings taken `seconds`
    apart, counting the processes present at both."""
    return {
        kind: round(
            100
            * sum(after[kind][pid] - used for pid, used in then.items() if pid in after[kind])
            / seconds,
            1,
        )
        for kind, then in before.items()
    }


class CpuMeter:
    """The CPU used, from the meter's making until it is read, by each kind of the platform's
    processes, by this command (`benchmark`) and by the whole machine."""

    def __init__(self, url: str) -> None:
        self.processes = {**platform_processes(url), "benchmark": [psutil.Process()]}
        self.before = cpu_seconds_used(self.processes)
        self.began = time.monotonic()
        # The machine's baseline: psutil's next call measures from this one.
        psutil.cpu_percent()

    def read(self) -> dict | None:
        """The figures, or None when too little time has passed to tell."""
        seconds = time.monotonic() - self.began
        if seconds < CPU_WINDOW_SECONDS:
            return None
        return {
            "seconds": round(seconds, 1),
            "machine_cores": psutil.cpu_count(),
            "machine_busy_percent": psutil.cpu_percent(),
            "percent_of_one_core": cpu_shares(
                self.before, cpu_seconds_used(self.processes), seconds=seconds
            ),
        }


def _port_argument(arguments: list[str]) -> str | None:
    for option, value in itertools.pairwise(arguments):
        if option == "--port":
            return value
    return None


async def sample_peak_memory(url: str, peaks: dict[str, int], stop: asyncio.Event) -> None:
    processes = platform_processes(url)
    while not stop.is_set():
        for kind, members in processes.items():
            for process in members:
                with contextlib.suppress(psutil.NoSuchProcess):
                    peaks[kind] = max(peaks.get(kind, 0), process.memory_info().rss)
        await asyncio.sleep(0.5)


async def bench_run(bench: Bench, **options) -> tuple[float, dict]:
    """Run the benchmark; returns the burst throughput and the peak RSS (MB) by process kind."""
    peaks: dict[str, int] = {}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak_memory(bench.url, peaks, stop))
    try:
        throughput = await bench.run(**options)
    finally:
        stop.set()
        await sampler
    return throughput, {kind: round(rss / 2**20, 1) for kind, rss in peaks.items()}
