"""The web process's HTTP path under ASGI."""

import gc
import logging

from django.core.handlers.asgi import ASGIHandler


def test_the_middleware_chain_runs_in_the_requests_one_thread(settings, caplog):
    # given: with DEBUG on, Django logs each point where its chain switches between the event
    # loop and a thread
    settings.DEBUG = True
    caplog.set_level(logging.DEBUG, logger="django.request")

    # when: the chain is built as the ASGI server builds it
    ASGIHandler()

    # then: one switch, at the bottom, into the asynchronous view handler; every middleware
    # above it runs in the request's thread, with no hop back to the event loop per hook
    assert [record.getMessage() for record in caplog.records] == [
        "Asynchronous handler adapted for middleware "
        "dispatch.exceptions.DatabaseUnavailableMiddleware."
    ]


def test_the_web_process_collects_garbage_on_its_own_thresholds():
    # given: the web process's entry point, as the ASGI server imports it
    from dispatch import asgi

    # then: start-up's objects are frozen and the young generation waits for 10,000
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == asgi.GC_THRESHOLDS == (10_000, 10, 10)
