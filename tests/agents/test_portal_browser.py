"""The agent portal in Chromium against the real platform (ASGI server, Celery worker and beat,
Redis): an agent logs in, goes available, gets a bot's escalation offered live, accepts it,
talks with the customer and resolves it; declines, expiries, releases and reconnects; and the
portal's other pages. Screenshots of every page go to artifacts/screenshots/."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import expect

from agents.models import Agent
from dispatch.models import DispatchPolicy, Offer
from tests.browser import chromium_page
from tests.live import ROOT, wait_for
from tickets.models import Ticket, TicketEvent

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "pass-word-1"
# For what crosses the Celery worker and the channel layer before the page can show it.
LIVE_TIMEOUT_MS = 15_000
SCRIPT_LINE = "<script>alert(1)</script>"
PHONE = {"width": 390, "height": 844}

# Headless Chromium has neither a notification centre nor speakers to look at: these record
# the portal's notifications and the notes of its chime instead.
RECORD_ALERTS = """
window.alerts = { notifications: [], chimes: 0 };
window.Notification = class extends EventTarget {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) {
    super();
    Object.assign(this, { title, body: options.body, tag: options.tag, closed: false });
    window.alerts.notifications.push(this);
  }
  close() { this.closed = true; }
};
const startTone = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.alerts.chimes += 1;
  return startTone.apply(this, args);
};
"""


@pytest.fixture
def page(monkeypatch):
    with chromium_page(
        monkeypatch, "--autoplay-policy=no-user-gesture-required", accept_downloads=True
    ) as page:
        page.on("dialog", lambda dialog: (page.errors.append(dialog.message), dialog.dismiss()))
        yield page


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def log_in(page, base_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/")
    expect(page).to_have_url(f"{base_url}/accounts/login/?next=/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Workspace")


def go_available(page) -> None:
    page.get_by_text("Available", exact=True).click()
    expect(page.locator("#status-note")).to_have_text("You are available: new offers come to you.")


def escalate(platform, bot, external_id: str, customer: dict, **fields) -> str:
    response = httpx.post(
        f"{platform.url}/api/v1/escalations/",
        headers={"Authorization": f"Bearer {bot.api_key}"},
        json={"external_id": external_id, "language": "en", "customer": customer, **fields},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def customer_says(platform, bot, ticket_id: str, text: str) -> None:
    response = httpx.post(
        f"{platform.url}/api/v1/tickets/{ticket_id}/messages/",
        headers={"Authorization": f"Bearer {bot.api_key}"},
        json={"text": text},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def set_status_elsewhere(platform, username: str, status: str) -> None:
    """Change the agent's status as another client of the agent API would."""
    token = httpx.post(
        f"{platform.url}/api/v1/auth/token/",
        json={"username": username, "password": PASSWORD},
        timeout=10,
    ).json()["token"]
    response = httpx.post(
        f"{platform.url}/api/v1/agent/status/",
        headers={"Authorization": f"Token {token}"},
        json={"status": status},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def webhook_texts(receiver, event: str) -> list[str]:
    with receiver.lock:
        hooks = [hook.json for hook in receiver.received]
    return [hook["message"]["text"] for hook in hooks if hook["event"] == event]


def alerts(page) -> dict:
    return page.evaluate(
        "({chimes: window.alerts.chimes, notifications: window.alerts.notifications.map("
        "(n) => [n.title, n.body, n.closed])})"
    )


def test_agent_takes_and_resolves_an_escalation_in_the_portal(
    live_platform, bot_receiver, live_agent_factory, bot, page
):
    agent = live_agent_factory(
        display_name="Maja", languages=["en"], skills=["refunds"], pay_rate=Decimal("2.50")
    )
    page.add_init_script(RECORD_ALERTS)

    log_in(page, live_platform.url, agent.user.username)
    expect(page.locator("#agent-name")).to_have_text("Maja")
    expect(page.locator("#status-note")).to_have_text("You are offline: no new offers.")
    expect(page.locator("#connection-banner")).to_be_hidden()
    go_available(page)
    expect(page.get_by_label("Available")).to_be_checked()
    expect(page.locator(".stat-value")).to_have_text(["0 of 2", "0", "0.00"])

    ticket_id = escalate(
        live_platform,
        bot,
        "conv-portal-1",
        {"id": "cust-77", "name": "Anna", "tier": "gold"},
        skills=["refunds"],
        priority="high",
        summary="Charged twice for order 5531; asked for a person.",
        transcript=[
            {"role": "customer", "text": "I was charged twice"},
            {"role": "customer", "text": SCRIPT_LINE},
            {"role": "bot", "text": "Let me find a colleague for you."},
        ],
        callback_url=bot_receiver.url,
    )

    offer = page.locator(".offer")
    expect(offer).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(offer.locator("h3")).to_have_text("Anna gold")
    expect(offer.locator(".facts dd")).to_have_text(
        ["English (en)", "high", "customer requested", "refunds"]
    )
    expect(offer.locator(".summary")).to_have_text(
        "Charged twice for order 5531; asked for a person."
    )
    expect(offer.locator(".waiting")).to_have_text(re.compile(r"^Customer waiting \d+ s$"))
    expect(offer.locator(".countdown")).to_have_text(re.compile(r"^Expires in \d+ s$"))
    expect(page).to_have_title("(1) Workspace · gig-dispatch")
    expect(page.locator("#offers-badge")).to_have_text("1")
    page.wait_for_function("window.alerts.notifications.length === 1")
    assert alerts(page) == {
        "chimes": 1,
        "notifications": [
            ["New offer: Anna", "English (en) · high priority · customer requested", False]
        ],
    }
    screenshot(page, "workspace-offer")

    offer.get_by_role("button", name="Accept").click()

    ticket = page.locator(".ticket")
    expect(ticket).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(offer).to_have_count(0)
    expect(page).to_have_title("Workspace · gig-dispatch")
    expect(page.locator("#stat-load")).to_have_text("1 of 2")
    expect(ticket.locator(".escalation")).to_have_text("Escalated: customer requested")
    expect(ticket.locator(".message .who")).to_have_text(["Anna", "Anna", "Bot"])
    expect(ticket.locator(".message-text")).to_have_text(
        ["I was charged twice", SCRIPT_LINE, "Let me find a colleague for you."]
    )
    expect(ticket.locator(".transcript script")).to_have_count(0)
    assert alerts(page)["notifications"][0][2] is True
    assert Ticket.objects.get(pk=ticket_id).agent_id == agent.pk

    customer_says(live_platform, bot, ticket_id, "Hello? Is someone there?")
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
    screenshot(page, "workspace-ticket")

    ticket.get_by_label("Outcome").select_option("solved")
    ticket.get_by_label("Note (optional)").fill("Refunded the double charge.")
    ticket.get_by_role("button", name="Resolve").click()

    expect(ticket).to_have_count(0)
    expect(page.locator("#tickets-note")).to_have_text("Resolved the ticket for Anna: solved.")
    expect(page.locator(".stat-value")).to_have_text(["0 of 2", "1", "2.50"])
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


def test_offers_by_keyboard_a_release_and_a_status_change_made_elsewhere(
    live_platform, live_agent_factory, bot, page
):
    agent = live_agent_factory(display_name="Maja", capacity=2)
    log_in(page, live_platform.url, agent.user.username)
    go_available(page)
    first = escalate(live_platform, bot, "conv-keys-1", {"id": "c-1", "name": "Ben"})
    second = escalate(live_platform, bot, "conv-keys-2", {"id": "c-2", "name": "Cleo"})
    offers = page.locator(".offer")
    expect(offers.locator(".customer-name")).to_have_text(["Ben", "Cleo"], timeout=LIVE_TIMEOUT_MS)

    page.keyboard.press("d")
    reason = offers.filter(has_text="Ben").get_by_label("Why are you declining? (optional)")
    expect(reason).to_be_focused()
    reason.fill("Not my area")
    screenshot(page, "workspace-declining")
    reason.press("Enter")

    expect(offers.locator(".customer-name")).to_have_text(["Cleo"])
    expect(page.locator("#offers-note")).to_have_text("Declined the offer for Ben.")
    wait_for(
        lambda: (
            Offer.objects.filter(ticket_id=first, status=Offer.Status.DECLINED)
            .values_list("decline_reason", flat=True)
            .first()
            == "Not my area"
        ),
        timeout=LIVE_TIMEOUT_MS / 1000,
        what="the declined offer with its reason",
    )

    page.keyboard.press("a")

    ticket = page.locator(".ticket")
    expect(ticket.locator(".customer-name")).to_have_text("Cleo", timeout=LIVE_TIMEOUT_MS)
    expect(offers).to_have_count(0)
    assert Ticket.objects.get(pk=second).agent_id == agent.pk

    ticket.get_by_text("Release to the queue").click()
    ticket.get_by_label("Reason (optional)").fill("Needs a billing specialist")
    ticket.get_by_role("button", name="Release ticket").click()

    expect(ticket).to_have_count(0)
    expect(page.locator("#tickets-note")).to_have_text(
        "Released the ticket for Cleo back to the queue."
    )
    released = Ticket.objects.get(pk=second)
    assert (released.status, released.agent_id) == (Ticket.Status.QUEUED, None)
    assert list(
        TicketEvent.objects.filter(ticket=released, kind="released").values_list(
            "detail", flat=True
        )
    ) == [{"reason": "Needs a billing specialist"}]

    set_status_elsewhere(live_platform, agent.user.username, "offline")

    expect(page.get_by_label("Offline")).to_be_checked(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#status-note")).to_have_text("You are offline: no new offers.")


def test_an_offer_that_is_not_answered_expires_on_screen(
    live_platform, live_agent_factory, bot, page
):
    DispatchPolicy.objects.update_or_create(pk=1, defaults={"offer_timeout_seconds": 5})
    agent = live_agent_factory(display_name="Maja")
    log_in(page, live_platform.url, agent.user.username)
    go_available(page)

    ticket_id = escalate(live_platform, bot, "conv-expiry-1", {"id": "c-3", "name": "Dora"})

    offer = page.locator(".offer")
    expect(offer.locator(".countdown")).to_have_text(
        re.compile(r"^(Expires in [1-5] s|Expired)$"), timeout=LIVE_TIMEOUT_MS
    )
    expect(offer).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#offers-note")).to_have_text("Offer for Dora withdrawn: it expired.")
    expect(page).to_have_title("Workspace · gig-dispatch")
    assert list(Offer.objects.filter(ticket_id=ticket_id).values_list("status", flat=True)) == [
        Offer.Status.EXPIRED
    ]


def test_a_reconnect_shows_a_banner_and_resyncs_what_changed_meanwhile(
    live_platform, live_agent_factory, bot, page
):
    agent = live_agent_factory(display_name="Maja")
    links = {"cut": False, "open": []}

    def route(socket):
        # While the link is cut, every reconnect attempt fails at once, as offline it would.
        if links["cut"]:
            socket.close()
            return
        links["open"].append((socket, socket.connect_to_server()))

    page.route_web_socket(re.compile(r"/ws/agent/$"), route)
    log_in(page, live_platform.url, agent.user.username)
    go_available(page)
    ticket_id = escalate(live_platform, bot, "conv-reconnect-1", {"id": "c-4", "name": "Emil"})
    expect(page.locator(".offer")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    page.keyboard.press("a")
    ticket = page.locator(".ticket")
    expect(ticket).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    ticket.get_by_label("Reply to Emil").fill("A reply I am still typing")

    links["cut"] = True
    for socket, server in links["open"]:
        server.close()
        socket.close()

    expect(page.locator("#connection-banner")).to_have_text("Connection lost. Reconnecting…")
    expect(page.locator("#connection-banner")).to_be_visible()
    expect(page.get_by_label("Available")).to_be_disabled()
    screenshot(page, "workspace-reconnecting")
    # What happens while the page is away: a customer message, and a status change elsewhere.
    customer_says(live_platform, bot, ticket_id, "Are you still there?")
    set_status_elsewhere(live_platform, agent.user.username, "away")
    links["cut"] = False

    expect(page.locator("#connection-banner")).to_be_hidden(timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_label("Away")).to_be_checked()
    expect(page.locator("#status-note")).to_have_text(
        "You are away: no new offers until you are available."
    )
    expect(ticket.locator(".message-text").last).to_have_text("Are you still there?")
    expect(ticket.get_by_label("Reply to Emil")).to_have_value("A reply I am still typing")
    assert Agent.objects.get(pk=agent.pk).status == Agent.Status.AWAY


def test_an_accept_whose_answer_is_lost_shows_the_ticket_from_the_api(
    live_platform, live_agent_factory, bot, page
):
    agent = live_agent_factory(display_name="Maja")
    dropped = []

    def route(socket):
        server = socket.connect_to_server()

        def from_server(message):
            # The channel layer delivers at most once: this frame never arrives.
            if json.loads(message)["type"] == "ticket.assigned":
                dropped.append(message)
                return
            socket.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws/agent/$"), route)
    log_in(page, live_platform.url, agent.user.username)
    go_available(page)
    ticket_id = escalate(live_platform, bot, "conv-lost-answer", {"id": "c-9", "name": "Ida"})
    expect(page.locator(".offer")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#offers-badge")).to_have_text("1")

    page.keyboard.press("a")

    expect(page.locator(".ticket")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(".offer")).to_have_count(0)
    expect(page.locator("#offers-badge")).to_be_hidden()
    expect(page.locator(".ticket").get_by_label("Reply to Ida")).to_be_visible()
    assert [json.loads(message)["ticket"]["id"] for message in dropped] == [ticket_id]
    assert Ticket.objects.get(pk=ticket_id).agent_id == agent.pk


def test_an_offer_and_a_ticket_whose_frames_are_lost_appear_after_the_next_heartbeat(
    live_platform, live_agent_factory, bot, ticket_factory, page
):
    agent = live_agent_factory(display_name="Maja", capacity=2)
    dropped = []

    def route(socket):
        server = socket.connect_to_server()

        def from_server(message):
            # The channel layer delivers at most once: this frame never arrives.
            if json.loads(message)["type"] == "offer.created":
                dropped.append(message)
                return
            socket.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws/agent/$"), route)
    page.add_init_script(RECORD_ALERTS)
    log_in(page, live_platform.url, agent.user.username)
    go_available(page)
    offered_id = escalate(live_platform, bot, "conv-lost-offer", {"id": "c-7", "name": "Ida"})
    wait_for(lambda: Offer.objects.filter(ticket_id=offered_id).exists(), timeout=15)
    expect(page.locator(".offer")).to_have_count(0)

    # when the next heartbeat is answered: the offer is named, and the page never heard of it
    page.evaluate("window.portal.send({ type: 'heartbeat' })")

    expect(page.locator(".offer")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(".offer")).to_contain_text("Ida")
    expect(page.locator("#offers-badge")).to_have_text("1")
    assert [json.loads(message)["offer"]["ticket"]["id"] for message in dropped] == [offered_id]
    assert alerts(page)["chimes"] == 1

    # given: a ticket the agent holds whose `ticket.assigned` never came, its offers unchanged
    held = ticket_factory(
        integration=bot,
        customer_name="Ola",
        status=Ticket.Status.ASSIGNED,
        agent=Agent.objects.get(pk=agent.pk),
        assigned_at=datetime.now(UTC),
    )
    expect(page.locator(".ticket")).to_have_count(0)

    # when the next heartbeat is answered: the tickets differ, the offers do not
    page.evaluate("window.portal.send({ type: 'heartbeat' })")

    expect(page.locator(".ticket")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(".ticket").get_by_label("Reply to Ola")).to_be_visible()
    assert page.locator(".ticket").get_attribute("data-ticket-id") == str(held.pk)
    expect(page.locator(".offer")).to_have_count(1)
    assert alerts(page)["chimes"] == 1


def test_history_earnings_availability_and_profile_pages(
    live_platform, live_agent_factory, ticket_factory, page
):
    agent = live_agent_factory(
        display_name="Maja",
        languages=["sv", "en"],
        skills=["refunds"],
        pay_rate=Decimal("2.50"),
        time_zone="Europe/Stockholm",
    )
    for resolved_at, name, minutes, csat in [
        (datetime(2026, 3, 8, 22, 30, tzinfo=UTC), "Anna", 7, 5),
        (datetime(2026, 3, 9, 8, 15, tzinfo=UTC), "Ben", 15, None),
        (datetime(2026, 3, 10, 14, 0, tzinfo=UTC), SCRIPT_LINE, 62, 3),
    ]:
        ticket_factory(
            agent=agent,
            status=Ticket.Status.RESOLVED,
            outcome=Ticket.Outcome.SOLVED,
            customer_name=name,
            assigned_at=resolved_at - timedelta(minutes=minutes),
            resolved_at=resolved_at,
            csat_score=csat,
        )
    log_in(page, live_platform.url, agent.user.username)
    nav = page.get_by_role("navigation", name="Portal")

    nav.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("History")
    expect(nav.get_by_role("link", name="History")).to_have_attribute("aria-current", "page")
    expect(page.locator("#history tbody tr")).to_have_text(
        [
            re.compile(
                r"^\s*Tue 10 Mar 2026, 15:00\s+<script>alert\(1\)</script>\s+Solved\s+1 h 2 min"
                r"\s+3 / 5"
            ),
            re.compile(r"^\s*Mon 9 Mar 2026, 09:15\s+Ben\s+Solved\s+15 min 0 s\s+not rated"),
            re.compile(r"^\s*Sun 8 Mar 2026, 23:30\s+Anna\s+Solved\s+7 min 0 s\s+5 / 5"),
        ]
    )  # fmt: skip
    expect(page.locator("#csat-average")).to_have_text("4.00")
    screenshot(page, "history")

    nav.get_by_role("link", name="Earnings").click()
    expect(page.locator("#weeks tbody tr")).to_have_text(
        [
            re.compile(r"^\s*Mon 9 Mar 2026 – Sun 15 Mar 2026\s+2\s+5.00\s*$"),
            re.compile(r"^\s*Mon 2 Mar 2026 – Sun 8 Mar 2026\s+1\s+2.50\s*$"),
        ]
    )
    expect(page.locator("#earned-total")).to_have_text("7.50")
    screenshot(page, "earnings")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "earnings.csv"
    rows = download.value.path().read_text().splitlines()
    assert [row.split(",")[:2] for row in rows] == [
        ["resolved_at", "week_of"],
        ["2026-03-10T15:00:00+01:00", "2026-03-09"],
        ["2026-03-09T09:15:00+01:00", "2026-03-09"],
        ["2026-03-08T23:30:00+01:00", "2026-03-02"],
    ]

    nav.get_by_role("link", name="Availability").click()
    expect(page.locator("#windows")).to_have_text("No hours set yet.")
    for day in ("Monday", "Tuesday", "Wednesday"):
        page.get_by_label(day, exact=True).check()
    page.get_by_label("From", exact=True).fill("09:00")
    page.get_by_label("To", exact=True).fill("17:00")
    page.get_by_role("button", name="Add").click()
    windows = page.locator("#windows li")
    expect(windows).to_have_text(
        [
            re.compile(r"Monday\s+09:00–17:00"),
            re.compile(r"Tuesday\s+09:00–17:00"),
            re.compile(r"Wednesday\s+09:00–17:00"),
        ]
    )
    page.get_by_label("Tuesday", exact=True).check()
    page.get_by_label("From", exact=True).fill("16:00")
    page.get_by_label("To", exact=True).fill("20:00")
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Tuesday 16:00–20:00 overlaps Tuesday 09:00–17:00."
    )
    screenshot(page, "availability")
    page.get_by_role("button", name="Remove Wednesday 09:00–17:00").click()
    expect(windows).to_have_count(2)
    assert list(agent.availability.values_list("weekday", flat=True)) == [0, 1]

    nav.get_by_role("link", name="Profile").click()
    expect(page.locator("#profile-languages")).to_have_text("English (en); Swedish (sv)")
    expect(page.locator("#profile-skills")).to_have_text("Refunds")
    page.get_by_label("Display name").fill("Maja L.")
    page.get_by_label("Time zone").select_option("America/New_York")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    expect(page.locator("#agent-name")).to_have_text("Maja L.")
    screenshot(page, "profile")
    agent.refresh_from_db()
    assert (agent.display_name, agent.time_zone) == ("Maja L.", "America/New_York")

    nav.get_by_role("link", name="History").click()
    expect(page.locator("#history tbody tr td:first-child")).to_have_text(
        ["Tue 10 Mar 2026, 10:00", "Mon 9 Mar 2026, 04:15", "Sun 8 Mar 2026, 18:30"]
    )

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


def test_every_page_fits_a_phone_screen(live_platform, live_agent_factory, page):
    agent = live_agent_factory(display_name="Maja")
    page.set_viewport_size(PHONE)
    log_in(page, live_platform.url, agent.user.username)
    go_available(page)

    for path, name in [
        ("/", "phone-workspace"),
        ("/history/", "phone-history"),
        ("/earnings/", "phone-earnings"),
        ("/availability/", "phone-availability"),
        ("/profile/", "phone-profile"),
    ]:
        page.goto(f"{live_platform.url}{path}")
        expect(page.locator("#connection-banner")).to_be_hidden(timeout=LIVE_TIMEOUT_MS)
        assert page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        ), f"{path} scrolls sideways on a phone"
        screenshot(page, name)


def test_a_forgotten_password_is_reset_through_the_e_mail_link(
    live_platform, live_agent_factory, page
):
    agent = live_agent_factory(display_name="Maja")
    agent.user.email = "maja@example.com"
    agent.user.save(update_fields=["email"])
    page.goto(f"{live_platform.url}/accounts/login/")
    screenshot(page, "login")

    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("E-mail address").fill("maja@example.com")
    screenshot(page, "password-reset")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")

    # The console e-mail backend writes the message to the web process's output.
    web_log = live_platform.processes["web"].log
    link = wait_for(
        lambda: re.search(
            rf"{re.escape(live_platform.url)}/accounts/reset/\S+/",
            web_log.read_text(errors="replace"),
        ),
        what="the reset e-mail in the web process's output",
    ).group(0)
    page.goto(link)
    page.get_by_label("New password", exact=True).fill("a-brand-new-secret-7")
    page.get_by_label("New password again").fill("a-brand-new-secret-7")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your new password is set")

    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill(agent.user.username)
    page.get_by_label("Password").fill("a-brand-new-secret-7")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#agent-name")).to_have_text("Maja")


def test_a_suspended_agent_is_told_the_portal_is_not_for_them(
    live_platform, live_agent_factory, page
):
    agent = live_agent_factory(account_state=Agent.AccountState.SUSPENDED)

    page.goto(f"{live_platform.url}/")
    page.get_by_label("Username").fill(agent.user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("This portal is for active agents")
    assert page.goto(f"{live_platform.url}/").status == 403
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
