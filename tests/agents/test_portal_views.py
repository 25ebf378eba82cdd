"""The portal's server-rendered pages, through Django's test client."""

import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from agents.admin import AgentAvailabilityInline
from agents.models import Agent, AgentAvailability, AgentLanguage
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

PAGES = ["/", "/today/", "/history/", "/earnings/", "/earnings.csv", "/availability/", "/profile/"]
HTMX = {"HTTP_HX_REQUEST": "true"}


class Cells(HTMLParser):
    """The text of each cell of one table, row by row, whitespace collapsed."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.inside = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table(response, table_id: str) -> list[list[str]]:
    parser = Cells(table_id)
    parser.feed(response.content.decode())
    return parser.rows


def texts(response, pattern: str) -> list[str]:
    return [
        " ".join(re.sub(r"<[^>]+>", " ", match).split())
        for match in re.findall(pattern, response.content.decode(), flags=re.S)
    ]


@pytest.fixture
def maja(agent_factory):
    return agent_factory(
        display_name="Maja",
        pay_rate=Decimal("2.50"),
        time_zone="Europe/Stockholm",
        languages=["sv", "en"],
        skills=["refunds", "billing"],
    )


@pytest.fixture
def maja_client(client, maja):
    client.force_login(maja.user)
    return client


@pytest.fixture
def resolve(ticket_factory):
    def create(agent, resolved_at, *, handling=timedelta(minutes=10), **fields):
        return ticket_factory(
            agent=agent,
            status=Ticket.Status.RESOLVED,
            outcome=fields.pop("outcome", Ticket.Outcome.SOLVED),
            assigned_at=resolved_at - handling,
            resolved_at=resolved_at,
            **fields,
        )

    return create


@pytest.mark.parametrize("url", PAGES)
def test_every_page_sends_a_visitor_to_log_in(client, url):
    response = client.get(url)

    assert (response.status_code, response["Location"]) == (302, f"/accounts/login/?next={url}")


@pytest.mark.parametrize("url", PAGES)
def test_every_page_is_refused_to_an_agent_who_is_not_active(client, agent_factory, url):
    applicant = agent_factory(account_state=Agent.AccountState.APPLICANT)
    client.force_login(applicant.user)

    response = client.get(url)

    assert response.status_code == 403
    assert "This portal is for active agents" in response.content.decode()


@pytest.mark.parametrize("url", PAGES)
def test_every_page_is_an_active_agents(maja_client, url):
    assert maja_client.get(url).status_code == 200


def test_the_workspace_shows_load_and_the_days_figures(maja_client, maja, resolve, ticket_factory):
    resolve(maja, timezone.now() - timedelta(minutes=1))
    resolve(maja, timezone.now() - timedelta(minutes=2))
    ticket_factory(agent=maja, status=Ticket.Status.ASSIGNED, assigned_at=timezone.now())

    response = maja_client.get("/")

    assert texts(response, r'<span class="stat-value" id="stat-\w+">(.*?)</span>') == [
        "1 of 2",
        "2",
        "5.00",
    ]


def test_the_days_figures_partial_is_what_htmx_swaps_in(maja_client, maja, resolve):
    resolve(maja, timezone.now() - timedelta(minutes=1))

    response = maja_client.get("/today/", **HTMX)

    assert response.content.decode().lstrip().startswith('<div id="today-stats"')
    assert texts(response, r'<span class="stat-value" id="stat-\w+">(.*?)</span>') == [
        "1",
        "2.50",
    ]


def test_history_lists_resolved_tickets_in_the_agents_time_zone(
    maja_client, maja, resolve, agent_factory
):
    resolve(
        maja,
        datetime(2026, 3, 10, 15, 30, tzinfo=UTC),
        handling=timedelta(minutes=12, seconds=5),
        customer_name="Anna",
        customer_tier="gold",
        csat_score=4,
        csat_comment="Quick, thanks",
        resolution_note="Refunded",
    )
    resolve(
        maja,
        datetime(2026, 3, 11, 9, 0, tzinfo=UTC),
        handling=timedelta(hours=1, minutes=3),
        customer_name="<script>alert(1)</script>",
        outcome=Ticket.Outcome.HANDBACK,
    )
    resolve(agent_factory(), datetime(2026, 3, 11, 9, 0, tzinfo=UTC), customer_name="Not Maja's")

    response = maja_client.get("/history/")

    assert table(response, "history") == [
        ["Resolved", "Customer", "Outcome", "Handling time", "CSAT", "Note"],
        ["Wed 11 Mar 2026, 10:00", "<script>alert(1)</script>", "Handback", "1 h 3 min",
         "not rated", ""],
        ["Tue 10 Mar 2026, 16:30", "Anna gold", "Solved", "12 min 5 s",
         "4 / 5 “Quick, thanks”", "Refunded"],
    ]  # fmt: skip
    assert "<script>alert(1)</script>" not in response.content.decode()
    assert texts(response, r'<strong id="csat-average">(.*?)</strong>') == ["4.00"]


def test_history_pages_by_25(maja_client, maja, resolve):
    first = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for hour in range(26):
        resolve(maja, first + timedelta(hours=hour))

    first_page = maja_client.get("/history/")
    second_page = maja_client.get("/history/?page=2")

    assert len(table(first_page, "history")) == 1 + 25
    assert table(second_page, "history")[1][0] == "Sun 1 Mar 2026, 13:00"
    assert texts(second_page, r'<nav class="pager"[^>]*>(.*?)</nav>') == ["Newer Page 2 of 2"]


def test_earnings_per_week_and_per_ticket(maja_client, maja, resolve):
    # Sunday 23:30 and Monday 00:30 in Stockholm (UTC+1): two different weeks.
    resolve(maja, datetime(2026, 3, 8, 22, 30, tzinfo=UTC), customer_name="Anna")
    resolve(maja, datetime(2026, 3, 8, 23, 30, tzinfo=UTC), customer_name="Ben")
    resolve(maja, datetime(2026, 3, 10, 8, 0, tzinfo=UTC), customer_name="Cleo")
    resolve(maja, timezone.now() - timedelta(seconds=1), customer_name="Dora")

    response = maja_client.get("/earnings/")

    weeks = table(response, "weeks")
    assert weeks[0] == ["Week", "Tickets", "Earned"]
    assert weeks[-2:] == [
        ["Mon 9 Mar 2026 – Sun 15 Mar 2026", "2", "5.00"],
        ["Mon 2 Mar 2026 – Sun 8 Mar 2026", "1", "2.50"],
    ]
    assert [row[1:] for row in table(response, "ticket-earnings")] == [
        ["Customer", "Outcome", "Earned"],
        ["Dora", "Solved", "2.50"],
        ["Cleo", "Solved", "2.50"],
        ["Ben", "Solved", "2.50"],
        ["Anna", "Solved", "2.50"],
    ]
    assert texts(response, r'<span class="stat-value" id="earned-[\w-]+">(.*?)</span>') == [
        "2.50",
        "10.00",
    ]


def test_earnings_csv_has_every_ticket_with_formulas_defused(maja_client, maja, resolve):
    anna = resolve(
        maja,
        datetime(2026, 3, 8, 22, 30, tzinfo=UTC),
        handling=timedelta(minutes=7, seconds=30),
        customer_name="Anna",
    )
    mallory = resolve(
        maja,
        datetime(2026, 7, 1, 8, 0, tzinfo=UTC),
        customer_name='=HYPERLINK("http://evil.example")',
        outcome=Ticket.Outcome.UNRESOLVED,
    )

    response = maja_client.get("/earnings.csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="earnings.csv"'
    assert response.content.decode().splitlines() == [
        "resolved_at,week_of,ticket_id,customer,outcome,handling_seconds,earned",
        f"2026-07-01T10:00:00+02:00,2026-06-29,{mallory.pk},"
        '"\'=HYPERLINK(""http://evil.example"")",unresolved,600,2.50',
        f"2026-03-08T23:30:00+01:00,2026-03-02,{anna.pk},Anna,solved,450,2.50",
    ]


def windows_of(agent) -> list[tuple[int, time, time]]:
    return list(
        AgentAvailability.objects.filter(agent=agent)
        .order_by("weekday", "start_time")
        .values_list("weekday", "start_time", "end_time")
    )


def test_availability_is_added_for_several_days_at_once(maja_client, maja):
    response = maja_client.post(
        "/availability/",
        {"weekdays": ["0", "1"], "start_time": "09:00", "end_time": "12:30"},
        **HTMX,
    )

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="availability"')
    assert windows_of(maja) == [(0, time(9), time(12, 30)), (1, time(9), time(12, 30))]
    assert texts(response, r'<li>\s*<span class="window-day">(.*?)</form>') == [
        "Monday 09:00–12:30 Remove",
        "Tuesday 09:00–12:30 Remove",
    ]


def test_availability_windows_may_touch_but_not_overlap(maja_client, maja):
    AgentAvailability.objects.create(agent=maja, weekday=1, start_time=time(9), end_time=time(12))

    touching = maja_client.post(
        "/availability/", {"weekdays": ["1"], "start_time": "12:00", "end_time": "14:00"}, **HTMX
    )
    overlapping = maja_client.post(
        "/availability/",
        {"weekdays": ["0", "1"], "start_time": "11:00", "end_time": "13:00"},
        **HTMX,
    )

    assert texts(touching, r'<p class="error" role="alert">(.*?)</p>') == []
    assert texts(overlapping, r'<p class="error" role="alert">(.*?)</p>') == [
        "Tuesday 11:00–13:00 overlaps Tuesday 09:00–12:00."
    ]
    assert windows_of(maja) == [(1, time(9), time(12)), (1, time(12), time(14))]


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        (
            {"weekdays": ["2"], "start_time": "17:00", "end_time": "09:00"},
            ["The window must end after it starts (split a shift past midnight into two windows)."],
        ),
        ({"start_time": "09:00", "end_time": "17:00"}, ["Choose at least one day."]),
        (
            {"weekdays": ["7"], "start_time": "09:00", "end_time": "17:00"},
            ["Select a valid choice. 7 is not one of the available choices."],
        ),
        ({"weekdays": ["2"], "start_time": "9 o'clock", "end_time": "17:00"},
         ["From: Enter a valid time."]),
    ],
)  # fmt: skip
def test_availability_refuses_a_window_that_makes_no_sense(maja_client, maja, data, errors):
    response = maja_client.post("/availability/", data, **HTMX)

    assert texts(response, r'<p class="error" role="alert">(.*?)</p>') == errors
    assert windows_of(maja) == []


def test_availability_without_htmx_redirects_after_saving(maja_client, maja):
    response = maja_client.post(
        "/availability/", {"weekdays": ["4"], "start_time": "08:00", "end_time": "16:00"}
    )

    assert (response.status_code, response["Location"]) == (302, "/availability/")
    assert windows_of(maja) == [(4, time(8), time(16))]


def test_an_agent_removes_only_its_own_windows(maja_client, maja, agent_factory):
    own = AgentAvailability.objects.create(
        agent=maja, weekday=0, start_time=time(9), end_time=time(12)
    )
    other = agent_factory()
    theirs = AgentAvailability.objects.create(
        agent=other, weekday=0, start_time=time(9), end_time=time(12)
    )

    refused = maja_client.post(f"/availability/{theirs.pk}/remove/", **HTMX)
    removed = maja_client.post(f"/availability/{own.pk}/remove/", **HTMX)

    assert (refused.status_code, removed.status_code) == (404, 200)
    assert windows_of(maja) == []
    assert windows_of(other) == [(0, time(9), time(12))]


def test_the_profile_saves_name_and_time_zone_but_not_languages(maja_client, maja):
    response = maja_client.post(
        "/profile/",
        {
            "display_name": "  Maja L.  ",
            "time_zone": "America/New_York",
            "capacity": "20",
            "pay_rate": "100.00",
            "languages": "fr",
        },
        **HTMX,
    )

    maja.refresh_from_db()
    assert (maja.display_name, maja.time_zone, maja.capacity, maja.pay_rate) == (
        "Maja L.",
        "America/New_York",
        2,
        Decimal("2.50"),
    )
    assert sorted(AgentLanguage.objects.filter(agent=maja).values_list("code", flat=True)) == [
        "en",
        "sv",
    ]
    assert texts(response, r'<p class="saved" role="status">(.*?)</p>') == ["Saved."]
    # The name in the status bar is swapped out of band.
    assert texts(response, r'<p id="agent-name" [^>]*hx-swap-oob="innerHTML">(.*?)</p>') == [
        "Maja L."
    ]


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"display_name": "Maja", "time_zone": "Mars/Olympus"},
         ["Mars/Olympus is not a known time zone."]),
        ({"display_name": "   ", "time_zone": "UTC"}, ["This field is required."]),
    ],
)  # fmt: skip
def test_the_profile_refuses_what_is_not_valid(maja_client, maja, data, errors):
    response = maja_client.post("/profile/", data, **HTMX)

    maja.refresh_from_db()
    assert (maja.display_name, maja.time_zone) == ("Maja", "Europe/Stockholm")
    assert texts(response, r'<p class="error" role="alert">(.*?)</p>') == errors


def test_the_profile_shows_languages_and_skills_read_only(maja_client, maja):
    AgentLanguage.objects.filter(agent=maja, code="en").update(is_primary=False)

    response = maja_client.get("/profile/")

    assert texts(response, r'<dd id="profile-(?:languages|skills)">(.*?)</dd>') == [
        "Swedish (sv); English (en), secondary",
        "Billing, Refunds",
    ]
    assert 'name="languages"' not in response.content.decode()


def test_the_profile_keeps_a_time_zone_alias_a_coordinator_set(maja_client, maja):
    maja.time_zone = "US/Eastern"
    maja.save(update_fields=["time_zone"])

    response = maja_client.get("/profile/")

    assert '<option value="US/Eastern" selected>US/Eastern</option>' in response.content.decode()


def test_a_forgotten_password_is_reset_by_e_mail(client, agent_factory, mailoutbox):
    agent = agent_factory()
    agent.user.email = "maja@example.com"
    agent.user.save(update_fields=["email"])

    sent = client.post("/accounts/password_reset/", {"email": "maja@example.com"})
    [mail] = mailoutbox
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.body).group(1)
    form = client.get(link, follow=True)
    chosen = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-brand-new-secret-7", "new_password2": "a-brand-new-secret-7"},
    )

    assert (sent.status_code, sent["Location"]) == (302, "/accounts/password_reset/done/")
    assert (mail.to, mail.subject) == (["maja@example.com"], "Your gig-dispatch password")
    assert (chosen.status_code, chosen["Location"]) == (302, "/accounts/reset/done/")
    assert client.login(username=agent.user.username, password="a-brand-new-secret-7")
    assert client.get(link, follow=True).context["validlink"] is False


def test_the_admin_refuses_overlapping_availability(agent_factory, admin_user):
    agent = agent_factory()
    existing = AgentAvailability.objects.create(
        agent=agent, weekday=2, start_time=time(9), end_time=time(12)
    )
    request = RequestFactory().post("/")
    request.user = admin_user
    formset_class = AgentAvailabilityInline(Agent, admin.site).get_formset(request, agent)
    prefix = formset_class.get_default_prefix()

    def submit(rows):
        data = {
            f"{prefix}-TOTAL_FORMS": str(len(rows)),
            f"{prefix}-INITIAL_FORMS": "1",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
        }
        for index, row in enumerate(rows):
            data.update({f"{prefix}-{index}-{key}": value for key, value in row.items()})
        return formset_class(data, instance=agent, prefix=prefix)

    kept = {"id": str(existing.pk), "agent": str(agent.pk), "weekday": "2"}
    overlapping = submit(
        [
            {**kept, "start_time": "09:00", "end_time": "12:00"},
            {"weekday": "2", "start_time": "11:00", "end_time": "14:00"},
        ]
    )
    after_deleting = submit(
        [
            {**kept, "start_time": "09:00", "end_time": "12:00", "DELETE": "on"},
            {"weekday": "2", "start_time": "11:00", "end_time": "14:00"},
        ]
    )

    assert overlapping.is_valid() is False
    assert overlapping.non_form_errors() == [
        "Wednesday 09:00–12:00 overlaps Wednesday 11:00–14:00."
    ]
    assert after_deleting.is_valid() is True
