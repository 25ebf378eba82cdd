"""The web process's HTTP path under ASGI."""

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
