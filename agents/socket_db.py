"""The threads that run the sockets' database work.

Channels' default (`database_sync_to_async`) runs every socket's calls in one thread, one after
another, each holding it while PostgreSQL answers: at a thousand agents on a busy machine, their
heartbeats, accepts and connects queued behind each other for seconds, and a socket waiting for
its turn could not forward the offers pushed to it meanwhile, since a consumer handles one
message at a time. Here a few threads share that work; more would take the interpreter lock
from the event loop more often (README: Performance). Each holds at most one pooled connection
(settings: DATABASE_POOL_MAX_SIZE), and a socket still runs its own frames one at a time, in
order.
"""

from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async

SOCKET_DB_THREADS = 4

executor = ThreadPoolExecutor(max_workers=SOCKET_DB_THREADS, thread_name_prefix="socket-db")


def socket_db(func):
    """`func`, to be awaited from a socket, run in one of the sockets' database threads."""
    return database_sync_to_async(func, thread_sensitive=False, executor=executor)
