"""Chromium driven by Playwright, as the browser tests use it."""

import contextlib
from collections.abc import Iterator

from django.db import connection
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium_page(monkeypatch, *flags: str, **page_options) -> Iterator[Page]:
    """A page of a headless Chromium whose script errors collect in `page.errors`; the test
    fails if any remain at its end.

    Between its calls, Playwright's sync API leaves its event loop marked as running in this
    thread, so Django takes the test for async code: it refuses the ORM (the test's queries
    never run concurrently with that loop, so they are safe) and gives the test a database
    connection apart from the thread's usual one, which must be closed here, or PostgreSQL
    refuses to drop the test database at the end.
    """
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_FLAGS, *flags]
    )
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, **page_options)
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        yield page
        assert page.errors == []
    finally:
        browser.close()
        connection.close()
        playwright.stop()
