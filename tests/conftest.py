import os
import shutil
import threading

import pytest
from django.conf import global_settings, settings
from django.core.cache import cache
from django.db import connection, connections
from django.test import override_settings
from rest_framework.test import APIClient

from agents import socket_db

from . import factories
from .browser import CHROMIUM
from .live import BotReceiver, purge_routing_queue, running_platform

# CI sets this: a test that would be skipped here (no PostgreSQL, no Chromium) fails instead.
NO_SKIP = os.environ.get("DISPATCH_NO_SKIP") == "1"


def skip_or_fail(reason: str) -> None:
    if NO_SKIP:
        pytest.fail(f"{reason} (DISPATCH_NO_SKIP=1 forbids skipping it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _requirements(request):
    postgres_only = request.node.get_closest_marker("postgres_only")
    if postgres_only and connection.vendor != "postgresql":
        needs = postgres_only.args[0] if postgres_only.args else "row locks"
        skip_or_fail(f"needs PostgreSQL {needs}: set DATABASE_URL to a PostgreSQL database")
    if request.node.get_closest_marker("browser") and not shutil.which(CHROMIUM):
        skip_or_fail(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(autouse=True)
def _routing_queue_empty():
    """The sweep leaves queued tickets to tasks waiting in the routing queue. Tests run tasks
    eagerly, but a live platform's worker stopping at the end of its test puts the offer
    timers it held back in the queue: each test starts with none there."""
    purge_routing_queue()


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache. The rate limits count there, per process: log-ins
    made by earlier tests within the minute would otherwise throttle a later test's."""
    cache.clear()


@pytest.fixture(autouse=True)
def _channel_layer_of_its_own():
    """Each test gets a channel layer of its own, as each platform process has one.

    The platform receives on one event loop per process; the tests run a loop per test in one
    process. channels_redis keeps a lock per process channel in the layer, and a receive
    cancelled while it waits for that lock leaves it behind, bound to its loop: a later test's
    receive that has to wait for it fails with "bound to a different event loop". Setting
    CHANNEL_LAYERS makes Channels build its layers afresh."""
    with override_settings(CHANNEL_LAYERS=settings.CHANNEL_LAYERS):
        yield


@pytest.fixture
def skill_factory(db):
    return factories.SkillFactory


@pytest.fixture
def agent_factory(db):
    return factories.AgentFactory


@pytest.fixture
def bot_factory(db):
    return factories.BotIntegrationFactory


@pytest.fixture
def ticket_factory(db):
    return factories.TicketFactory


@pytest.fixture
def live_agent_factory(agent_factory):
    """AgentFactory with the password hashed as the platform hashes it.

    The test settings hash with MD5 for speed; the platform's processes run the base settings,
    which do not know that hasher, so they could not check an MD5 hash at log-in.
    """

    def create(**kwargs):
        with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
            return agent_factory(**kwargs)

    return create


@pytest.fixture
def bot(bot_factory):
    return bot_factory()


@pytest.fixture
def agent(agent_factory):
    """An active agent, online and available, speaking English."""
    return agent_factory(online=True)


@pytest.fixture
def bot_client(bot) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bot.api_key}")
    return client


@pytest.fixture
def agent_client(agent) -> APIClient:
    client = APIClient()
    client.force_authenticate(agent.user)
    return client


@pytest.fixture
def live_platform(transactional_db, tmp_path_factory):
    """The real platform (ASGI server, Celery worker and beat) on the test database, with the
    test's rows committed so that its processes see them.

    One per test, stopped before the database is emptied after the test: a sweep still running
    while the tables are truncated can deadlock with the truncation on PostgreSQL."""
    yield from running_platform(tmp_path_factory.mktemp("platform"))


@pytest.fixture
def bot_receiver():
    with BotReceiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _socket_threads_let_go_of_their_connections():
    """Each of the sockets' database threads closes its connections after each test.

    Channels' test communicator turns off the closing of old connections around a socket's
    database calls while it sends or receives (channels.testing.ApplicationCommunicator), so a
    connection a socket thread opened during a test stayed checked out of the pool: the test
    database could not be dropped at the end ("being accessed by other users"). The serving
    processes close them as usual. The barrier holds each closing task until every thread has
    one, so that each thread runs exactly one."""
    yield
    barrier = threading.Barrier(socket_db.SOCKET_DB_THREADS, timeout=10)

    def close_own_connections() -> None:
        connections.close_all()
        barrier.wait()

    closing = [
        socket_db.executor.submit(close_own_connections) for _ in range(socket_db.SOCKET_DB_THREADS)
    ]
    for task in closing:
        task.result()
