"""The real pieces for end-to-end tests: an ASGI server, Celery workers and beat, all as
processes on loopback against the test database and Redis, and a local HTTP receiver that
plays the bot's webhook endpoint."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database the tests run on, for the processes to share it."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = db["USER"] or "postgres"
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        return f"postgres://{user}{password}@{host}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Platform:
    """A running platform: `url` (http), `ws_url` (websocket base) and its processes."""

    port: int
    env: dict
    workdir: Path
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, name: str, args: list[str], ready: str) -> Process:
        """Start a process and wait until its log shows `ready`."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        process = Process(name, popen, log)
        self.processes[name] = process
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while ready not in log.read_text(errors="replace"):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{process.tail()}")
            time.sleep(0.05)
        return process

    def start_web(self) -> Process:
        return self.start(
            "web",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "dispatch.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--ws-max-size",
                "65536",
            ],
            ready="Uvicorn running",
        )

    def start_worker(self) -> Process:
        return self.start(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dispatch",
                "worker",
                "--queues",
                "routing,webhooks",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--hostname",
                f"test-{self.port}@%h",
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            ready="ready.",
        )

    def start_beat(self) -> Process:
        return self.start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dispatch",
                "beat",
                "--schedule",
                str(self.workdir / "beat-schedule"),
                "--loglevel",
                "INFO",
            ],
            ready="maxinterval",
        )

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes.values())


def platform_env(**overrides: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dispatch.settings.base",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": "live-tests-only",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SWEEP_INTERVAL_SECONDS": "1",
        # Many tests log agents in; the limit has its own tests.
        "AUTH_TOKEN_LOGIN_RATE": "1000/minute",
        **overrides,
    }


def wait_for(predicate, *, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() returns a truthy value, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class BotReceiver:
    """A local HTTP server playing the bot's webhook endpoint; it records every request and
    answers with the next status in `responses` (then 200)."""

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        self.responses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.append(
                        ReceivedWebhook({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.responses.pop(0) if receiver.responses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/dispatch"

    def events(self) -> list[str]:
        with self.lock:
            return [hook.json["event"] for hook in self.received]

    def __enter__(self) -> "BotReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def running_platform(workdir: Path, *, beat: bool = True) -> Iterator[Platform]:
    """Start web, worker (and beat); stop them all afterwards, printing logs on failure."""
    platform = Platform(
        port=free_port(), env=platform_env(STATIC_ROOT=str(workdir / "static")), workdir=workdir
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=platform.env,
        check=True,
    )
    try:
        platform.start_web()
        platform.start_worker()
        if beat:
            platform.start_beat()
        httpx.get(f"{platform.url}/healthz", timeout=5).raise_for_status()
        yield platform
    except BaseException:
        print(platform.logs())
        raise
    finally:
        platform.stop()
