"""Django's cache on Redis draws from one connection pool and one client per process
(dispatch.cache)."""

import threading

import redis
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from dispatch.settings.base import CACHES


def connections_received() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).info("stats")["total_connections_received"]


def platform_cache_at(client_name: str) -> dict:
    """The platform's cache settings, at an address no other pool of this process uses."""
    return {
        "default": {
            **CACHES["default"],
            "LOCATION": f"{settings.REDIS_URL}?client_name={client_name}",
        }
    }


def count_in_turn_from_ten_threads() -> None:
    """Ten threads in turn, as ten requests under ASGI, each count in the cache."""

    def count() -> None:
        caches["default"].set("shared-pool-probe", 1)
        caches["default"].get("shared-pool-probe")

    for _ in range(10):
        thread = threading.Thread(target=count)
        thread.start()
        thread.join()
    caches["default"].delete("shared-pool-probe")


def test_cache_calls_from_many_threads_share_one_redis_connection():
    # given
    before = connections_received()

    # when
    with override_settings(CACHES=platform_cache_at("test-shared-pool")):
        count_in_turn_from_ten_threads()

    # then Redis saw one connection from them (and one from this test's own look)
    assert connections_received() - before == 2


def test_cache_calls_from_many_threads_share_one_redis_client(monkeypatch):
    # given: every Redis client this process makes from now on is noted
    made = []
    make = redis.Redis.__init__

    def noting(client, *args, **kwargs):
        made.append(client)
        make(client, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", noting)

    # when: 21 cache calls from ten threads
    with override_settings(CACHES=platform_cache_at("test-shared-client")):
        count_in_turn_from_ten_threads()

    # then: one client served them all
    assert len(made) == 1
