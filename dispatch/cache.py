"""Django's cache on Redis with one connection pool and one client per process.

Django makes a cache object, and with it a Redis connection pool, in every thread and async
context, and never closes one. Under ASGI each HTTP request runs in a thread of its own, so
each request that touched the cache (every bot API call, for its rate limit) opened a new
connection to Redis, and left it to the garbage collector. With this backend every cache object
of the process draws from one pool per address and options, as the channel layer and Celery
already do.

Django also makes a new Redis client for every cache call: building one costs as much CPU as
the call itself (~90 µs here, twice per rate-limited request). redis-py's clients are
thread-safe, so each pool keeps one.
"""

import threading
from functools import cached_property

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class ProcessConnectionPool(redis.ConnectionPool):
    _pools: dict[tuple, "ProcessConnectionPool"] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs) -> "ProcessConnectionPool":
        key = (url, tuple(sorted(kwargs.items())))
        with cls._lock:
            pool = cls._pools.get(key)
            if pool is None:
                pool = cls._pools[key] = super().from_url(url, **kwargs)
            return pool

    @cached_property
    def client(self) -> redis.Redis:
        return redis.Redis(connection_pool=self)


class ProcessRedisCacheClient(RedisCacheClient):
    def __init__(self, servers, **options) -> None:
        super().__init__(servers, pool_class=ProcessConnectionPool, **options)

    def get_client(self, key=None, *, write=False) -> redis.Redis:
        return self._get_connection_pool(write).client


class RedisCache(DjangoRedisCache):
    """`CACHES` backend: Django's Redis cache on the process's pool and client."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ProcessRedisCacheClient
