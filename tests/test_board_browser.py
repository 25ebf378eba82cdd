"""The coordinators' live board in Chromium against the real platform (ASGI server, Celery
worker and beat, Redis): a coordinator logs in, a bot escalates, and the queue on the open
page changes without a reload."""

import httpx
import pytest
from django.conf import global_settings
from django.test import override_settings
from playwright.sync_api import expect

from tests.browser import chromium_page
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

PASSWORD = "pass-word-1"
# For what crosses the Celery worker and the channel layer before the page can show it.
LIVE_TIMEOUT_MS = 15_000


@pytest.fixture
def page(monkeypatch):
    with chromium_page(monkeypatch) as page:
        yield page


@pytest.fixture
def coordinator():
    # Hashed as the platform's processes hash (the test settings use MD5 for speed).
    with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
        return UserFactory(username="coordinator", password=PASSWORD, is_staff=True)


def test_the_queue_on_the_board_changes_live_when_a_bot_escalates(
    live_platform, coordinator, bot, page
):
    # given: a coordinator on the board, its socket up, nobody waiting
    page.goto(f"{live_platform.url}/board/")
    expect(page).to_have_url(f"{live_platform.url}/accounts/login/?next=/board/")
    page.get_by_label("Username").fill("coordinator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Live board")
    expect(page.locator("#board-connection")).to_have_text("Live")
    expect(page.locator("#queue-depth")).to_have_text("0")
    # Gone if the page reloaded.
    page.evaluate("window.sameBoard = true")

    # when: the bot escalates a Swedish conversation (no agent is online to take it)
    response = httpx.post(
        f"{live_platform.url}/api/v1/escalations/",
        headers={"Authorization": f"Bearer {bot.api_key}"},
        json={"external_id": "conv-board-1", "language": "sv", "customer": {"id": "cust-1"}},
        timeout=10,
    )
    assert response.status_code == 201, response.text

    # then
    expect(page.locator("#queue-depth")).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    row = page.locator("#queue-by-language tbody tr")
    expect(row.locator("th")).to_have_text(["sv"])
    expect(row.locator("td").first).to_have_text("1")
    expect(page.locator('[data-figure="queued"]')).to_have_text("1")
    assert page.evaluate("window.sameBoard") is True
