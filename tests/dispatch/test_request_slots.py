"""At most WEB_REQUEST_SLOTS requests of a web process run at once (dispatch.middleware)."""

import os
import subprocess
import sys
import threading

from django.conf import settings as django_settings
from django.http import HttpResponse
from django.test import RequestFactory

from dispatch.middleware import RequestSlotsMiddleware
from tests.live import ROOT

# Seconds any step may take before the test gives up on it.
WAIT = 10


class HeldView:
    """Counts the requests inside it and holds each of them until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most_inside = 0
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, request):
        with self.lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.entered.release()
        self.release.wait(WAIT)
        with self.lock:
            self.inside -= 1
        return HttpResponse(request.path)


def send_at_once(middleware: RequestSlotsMiddleware, paths: list[str]):
    """Send a request for each path, each in a thread of its own, as Django runs them."""
    answers: list[str] = []

    def send(path: str) -> None:
        answers.append(middleware(RequestFactory().get(path)).content.decode())

    threads = [threading.Thread(target=send, args=[path]) for path in paths]
    for thread in threads:
        thread.start()
    return threads, answers


def test_requests_past_the_slots_wait_their_turn(settings):
    # given two slots, and a view that holds every request until released
    settings.WEB_REQUEST_SLOTS = 2
    view = HeldView()
    middleware = RequestSlotsMiddleware(view)

    # when five requests arrive at once
    threads, answers = send_at_once(middleware, ["/api/v1/escalations/"] * 5)

    # then two run and three wait
    assert view.entered.acquire(timeout=WAIT)
    assert view.entered.acquire(timeout=WAIT)
    assert not view.entered.acquire(timeout=0.5)
    assert view.inside == 2
    # and once released, all five are answered, never more than two at once
    view.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert answers == ["/api/v1/escalations/"] * 5
    assert view.most_inside == 2


def test_the_operations_endpoints_never_wait_for_a_slot(settings):
    # given one slot, held by a request
    settings.WEB_REQUEST_SLOTS = 1
    view = HeldView()
    middleware = RequestSlotsMiddleware(view)
    held, _ = send_at_once(middleware, ["/api/v1/agent/offers/"])
    assert view.entered.acquire(timeout=WAIT)

    # when the health, readiness and metrics endpoints are asked meanwhile
    threads, answers = send_at_once(middleware, ["/healthz", "/readyz", "/metrics"])

    # then each of them reaches the view beside the request holding the slot
    for _ in range(3):
        assert view.entered.acquire(timeout=WAIT)
    assert view.inside == 4
    view.release.set()
    for thread in [*held, *threads]:
        thread.join(WAIT)
    assert sorted(answers) == ["/healthz", "/metrics", "/readyz"]


def test_the_slots_bound_the_chain_from_its_top():
    assert django_settings.MIDDLEWARE[0] == "dispatch.middleware.RequestSlotsMiddleware"


def test_no_slot_at_all_is_refused_at_start_up():
    # when the settings are read with WEB_REQUEST_SLOTS=0
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dispatch.settings.base",
            "DEBUG": "1",
            "WEB_REQUEST_SLOTS": "0",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then the process stops, saying why, rather than serve nothing
    assert result.returncode == 1
    assert (
        "django.core.exceptions.ImproperlyConfigured: WEB_REQUEST_SLOTS must be at least 1: "
        "with none, no request runs." in result.stderr
    )
