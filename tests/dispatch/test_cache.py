"""Django's cache on Redis draws from one connection pool per process (dispatch.cache)."""

import threading

import redis
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from dispatch.settings.base import CACHES


def connections_received() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).info("stats")["total_connections_received"]


def test_cache_calls_from_many_threads_share_one_redis_connection():
    # given the platform's cache settings, at an address no other pool of this process uses
    cache_settings = {
        "default": {
            **CACHES["default"],
            "LOCATION": f"{settings.REDIS_URL}?client_name=test-shared-pool",
        }
    }
    before = connections_received()

    # when ten threads in turn, as ten requests under ASGI, each count in the cache
    def count() -> None:
        caches["default"].set("shared-pool-probe", 1)
        caches["default"].get("shared-pool-probe")

    with override_settings(CACHES=cache_settings):
        for _ in range(10):
            thread = threading.Thread(target=count)
            thread.start()
            thread.join()
        caches["default"].delete("shared-pool-probe")

    # then Redis saw one connection from them (and one from this test's own look)
    assert connections_received() - before == 2
