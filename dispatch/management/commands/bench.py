import asyncio
import json
import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dispatch.bench import SATURATED_PERCENT, Bench, bench_run, bench_setup


class Command(BaseCommand):
    help = (
        "Benchmark escalation → offer end to end against a running platform (make run, or "
        "--url), with real websockets, and the stack's floors measured in the same run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--agents", type=int, default=1000)
        parser.add_argument("--rate", type=float, default=20.0, help="Escalations per second.")
        parser.add_argument("--duration", type=float, default=30.0, help="Steady phase, s.")
        parser.add_argument(
            "--burst",
            type=int,
            help="Escalations in the burst (default: the agents' total capacity + 200, so a "
            "backlog forms and its drain is measured).",
        )
        parser.add_argument("--concurrency", type=int, default=50, help="Burst requests in flight.")
        parser.add_argument("--floor-samples", type=int, default=200)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--json", dest="json_path", type=Path, default=Path("bench.json"))

    def handle(
        self,
        *args,
        url,
        agents,
        rate,
        duration,
        burst,
        concurrency,
        floor_samples,
        seed,
        json_path: Path,
        **options,
    ):
        if agents < 1 or rate <= 0 or duration < 0 or concurrency < 1 or floor_samples < 1:
            raise CommandError(
                "--agents, --rate, --concurrency and --floor-samples must be positive."
            )
        # httpx logs every request at INFO: thousands of lines would bury the table.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        key, bench_agents = bench_setup(agents=agents, seed=seed)
        capacity = sum(agent.capacity for agent in bench_agents)
        bench = Bench(url=url, key=key, agents=bench_agents, seed=seed)
        throughput, peak_rss_mb = asyncio.run(
            bench_run(
                bench,
                rate=rate,
                duration=duration,
                burst=burst if burst is not None else capacity + 200,
                concurrency=concurrency,
                floor_samples=floor_samples,
                on_phase=lambda phase: self.stderr.write(f"… {phase}"),
            )
        )
        result = {**bench.report(throughput), "peak_rss_mb": peak_rss_mb}
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        self.stdout.write(self.table(result))
        self.stdout.write(f"JSON written to {json_path}")

    @staticmethod
    def table(result: dict) -> str:
        def row(name: str, p: dict) -> str:
            return f"{name:<28}{p['n']:>7}" + "".join(
                f"{'-' if p[k] is None else p[k]:>10}" for k in ("p50", "p95", "p99", "max")
            )

        rows = [f"{'latency (ms)':<28}{'n':>7}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}"]
        for name, p in result["latency_ms"].items():
            rows.append(row(name, p))
            if name == "escalation_to_offer":
                # Its parts, indented under it.
                parts = result["escalation_to_offer_parts_ms"]
                rows += [row(f"  {part}", q) for part, q in parts.items()]
        rows += [row(name, p) for name, p in result["floors_ms"].items()]
        rows += [
            f"agents: {result['agents']}, escalations: {result['escalations']}, "
            f"HTTP errors: {result['http_errors']}",
            f"escalation→offer p50 / floor sum p50 ({result['floor_sum_p50_ms']} ms): "
            f"{result['offer_p50_over_floor_sum']}",
            f"burst assignments per second: {result['burst_assignments_per_second']}",
            f"lost tickets: {result['lost_tickets']}"
            + (f" {result['lost_by_status']}" if result["lost_tickets"] else "")
            + f", double-held tickets: {result['double_held_tickets']}",
            f"agents' sockets closed by the platform: {result['sockets_dropped']}",
            f"peak RSS (MB): {result['peak_rss_mb']}",
        ]
        cpu = result["steady_cpu"]
        if cpu is not None:
            shares = ", ".join(
                f"{kind} {share}" for kind, share in cpu["percent_of_one_core"].items()
            )
            rows.append(
                f"CPU in the steady phase, % of one core: {shares}; the machine's "
                f"{cpu['machine_cores']} cores {cpu['machine_busy_percent']}% busy"
                + (
                    " (saturated: the latencies include waiting for a core)"
                    if cpu["machine_busy_percent"] >= SATURATED_PERCENT
                    else ""
                )
            )
        return "\n".join(rows)
