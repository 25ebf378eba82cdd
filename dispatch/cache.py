"""The Redis connection pool of Django's cache, one per process.

Django makes a cache object, and with it a Redis connection pool, in every thread and async
context, and never closes one. Under ASGI each HTTP request runs in a thread of its own, so
each request that touched the cache (every bot API call, for its rate limit) opened a new
connection to Redis, and left it to the garbage collector. With this pool class
(`CACHES["default"]["OPTIONS"]["pool_class"]`) every cache object of the process draws from
one pool per address and options, as the channel layer and Celery already do.
"""

import threading

import redis


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
