"""The agent portal in Chromium against the real platform: an agent logs in, goes available,
gets a bot's escalation offered live, accepts it, talks with the customer and resolves it."""

import re

import httpx
import pytest
from django.db import connection
from playwright.sync_api import expect, sync_playwright

from agents.models import Agent
from tests.conftest import CHROMIUM
from tests.live import ROOT, wait_for
from tickets.models import Ticket

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "pass-word-1"
# For what crosses the Celery worker and the channel layer before the page can show it.
LIVE_TIMEOUT_MS = 15_000
SCRIPT_LINE = "<script>alert(1)</script>"


@pytest.fixture
def page(monkeypatch):
    # Between its calls, Playwright's sync API leaves its event loop marked as running in this
    # thread, so Django takes the test for async code: it refuses the ORM (the test's queries
    # never run concurrently with that loop, so they are safe) and gives the test a database
    # connection apart from the thread's usual one, which must be closed here, or PostgreSQL
    # refuses to drop the test database at the end.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    try:
        yield browser.new_page(viewport={"width": 1280, "height": 900})
    finally:
        browser.close()
        connection.close()
        playwright.stop()


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/")
    expect(page).to_have_url(f"{base_url}/accounts/login/?next=/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def webhook_texts(receiver, event: str) -> list[str]:
    with receiver.lock:
        hooks = [hook.json for hook in receiver.received]
    return [hook["message"]["text"] for hook in hooks if hook["event"] == event]


def test_agent_takes_and_resolves_an_escalation_in_the_portal(
    live_platform, bot_receiver, live_agent_factory, bot, page
):
    agent = live_agent_factory(display_name="Maja", languages=["en"], skills=["refunds"])
    bot_headers = {"Authorization": f"Bearer {bot.api_key}"}
    dialogs, page_errors = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    log_in(page, live_platform.url, agent.user.username)
    expect(page.get_by_role("heading", level=1)).to_have_text("Maja")
    expect(page.locator("#status-note")).to_have_text("You are offline: no new offers.")
    page.get_by_text("Available", exact=True).click()
    expect(page.locator("#status-note")).to_have_text("You are available: new offers come to you.")
    expect(page.get_by_label("Available")).to_be_checked()

    escalation = httpx.post(
        f"{live_platform.url}/api/v1/escalations/",
        headers=bot_headers,
        json={
            "external_id": "conv-portal-1",
            "language": "en",
            "skills": ["refunds"],
            "priority": "high",
            "summary": "Charged twice for order 5531; asked for a person.",
            "customer": {"id": "cust-77", "name": "Anna", "tier": "gold"},
            "transcript": [
                {"role": "customer", "text": "I was charged twice"},
                {"role": "customer", "text": SCRIPT_LINE},
                {"role": "bot", "text": "Let me find a colleague for you."},
            ],
            "callback_url": bot_receiver.url,
        },
        timeout=10,
    )
    assert escalation.status_code == 201
    ticket_id = escalation.json()["id"]

    offer = page.locator(".offer")
    expect(offer).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(offer.locator("h3")).to_have_text("Anna gold")
    expect(offer.locator(".facts dd")).to_have_text(
        ["English (en)", "high", "customer requested", "refunds"]
    )
    expect(offer.locator(".summary")).to_have_text(
        "Charged twice for order 5531; asked for a person."
    )
    expect(offer.locator(".countdown")).to_have_text(re.compile(r"^Expires in \d+ s$"))
    expect(page).to_have_title("(1) Agent portal · gig-dispatch")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "portal-offer.png", full_page=True)

    offer.get_by_role("button", name="Accept").click()

    ticket = page.locator(".ticket")
    expect(ticket).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(offer).to_have_count(0)
    expect(ticket.locator(".message .who")).to_have_text(["Anna", "Anna", "Bot"])
    expect(ticket.locator(".message-text")).to_have_text(
        ["I was charged twice", SCRIPT_LINE, "Let me find a colleague for you."]
    )
    expect(ticket.locator(".transcript script")).to_have_count(0)
    assert Ticket.objects.get(pk=ticket_id).agent_id == agent.pk

    customer_message = httpx.post(
        f"{live_platform.url}/api/v1/tickets/{ticket_id}/messages/",
        headers=bot_headers,
        json={"text": "Hello? Is someone there?"},
        timeout=10,
    )
    assert customer_message.status_code == 201
    expect(ticket.locator(".message-text")).to_have_text(
        [
            "I was charged twice",
            SCRIPT_LINE,
            "Let me find a colleague for you.",
            "Hello? Is someone there?",
        ],
        timeout=LIVE_TIMEOUT_MS,
    )

    reply = page.get_by_label("Reply to Anna")
    expect(reply).to_be_focused()
    reply.press_sequentially("Hi Anna, I am Maja.")
    reply.press("Shift+Enter")
    reply.press_sequentially("I have refunded the second charge.")
    expect(reply).to_have_value("Hi Anna, I am Maja.\nI have refunded the second charge.")
    reply.press("Enter")
    expect(reply).to_have_value("")
    expect(ticket.locator(".from-agent .message-text")).to_have_text(
        ["Hi Anna, I am Maja.\nI have refunded the second charge."]
    )
    wait_for(
        lambda: (
            webhook_texts(bot_receiver, "ticket.message")
            == ["Hi Anna, I am Maja.\nI have refunded the second charge."]
        ),
        timeout=LIVE_TIMEOUT_MS / 1000,
        what="the agent's reply as a ticket.message webhook",
    )
    page.screenshot(path=SCREENSHOTS / "portal-workspace.png", full_page=True)

    ticket.get_by_label("Outcome").select_option("solved")
    ticket.get_by_label("Note (optional)").fill("Refunded the double charge.")
    ticket.get_by_role("button", name="Resolve").click()

    expect(ticket).to_have_count(0)
    expect(page.locator("#tickets-note")).to_have_text("Resolved the ticket for Anna: solved.")
    resolved = Ticket.objects.get(pk=ticket_id)
    assert (resolved.status, resolved.outcome, resolved.resolution_note) == (
        Ticket.Status.RESOLVED,
        Ticket.Outcome.SOLVED,
        "Refunded the double charge.",
    )
    wait_for(
        lambda: "ticket.resolved" in bot_receiver.events(),
        timeout=LIVE_TIMEOUT_MS / 1000,
        what="the ticket.resolved webhook",
    )
    assert bot_receiver.events() == ["ticket.assigned", "ticket.message", "ticket.resolved"]
    assert dialogs == []
    assert page_errors == []


def test_a_suspended_agent_is_told_the_portal_is_not_for_them(
    live_platform, live_agent_factory, page
):
    agent = live_agent_factory(account_state=Agent.AccountState.SUSPENDED)

    log_in(page, live_platform.url, agent.user.username)

    expect(page.get_by_role("heading", level=1)).to_have_text("This portal is for active agents")
    assert page.goto(f"{live_platform.url}/").status == 403
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
