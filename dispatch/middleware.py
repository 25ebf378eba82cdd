"""A bound on the requests a web process runs at once.

Under ASGI, Django runs each request's middleware chain and view in a thread of its own, and
those threads share one interpreter lock with the event loop that relays every agent's frames.
Fifty escalations in flight were fifty threads taking turns at the lock, the event loop one
turn in fifty-one: the frames they produced waited for it (README: Performance). Past a few at
once more threads add no throughput, as the process is held to one core by that lock anyway:
so at most WEB_REQUEST_SLOTS requests run, and the others wait their turn in their threads,
off the lock. The operations endpoints never wait: a busy process still answers its health
checks and its metrics.
"""

import threading

from django.conf import settings

OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestSlotsMiddleware:
    """Runs at most settings.WEB_REQUEST_SLOTS requests of this process at once.

    First in MIDDLEWARE, and synchronous only: it holds its slot in the request's thread for
    the whole chain and view, which Django runs in that one thread (see
    dispatch.exceptions.DatabaseUnavailableMiddleware). The body was read before the chain
    and the response is written after it, by the event loop, so a slow client holds no slot.
    """

    async_capable = False
    sync_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.slots = threading.BoundedSemaphore(settings.WEB_REQUEST_SLOTS)

    def __call__(self, request):
        if request.path_info in OPERATIONS_PATHS:
            return self.get_response(request)
        with self.slots:
            return self.get_response(request)
