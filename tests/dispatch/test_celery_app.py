"""The Celery app as the web server uses it: from a new thread for every request."""

import threading

from celery.backends.base import DisabledBackend

from dispatch.celery import app


def backend_seen_from_a_new_thread():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(app.backend))
    thread.start()
    thread.join()
    return seen[0]


def test_every_thread_shares_one_result_backend_instead_of_building_its_own():
    first = backend_seen_from_a_new_thread()

    assert isinstance(first, DisabledBackend)
    assert backend_seen_from_a_new_thread() is first
    assert app.backend is first
