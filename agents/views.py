"""The freelancer portal's pages.

Every page is an active agent's, rendered in the agent's own time zone. The workspace is live
over the websocket; the forms here (availability, profile) answer htmx requests with the
partial they replace, and plain form posts with a redirect, so they work without script too.
"""

import csv
import functools
from datetime import timedelta
from decimal import Decimal

import pycountry
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors
from .forms import AvailabilityForm, ProfileForm
from .locks import lock_agent
from .models import Agent, AgentAvailability, AgentLanguage

PAGE_SIZE = 25
# Characters that make a spreadsheet read a cell as a formula: a customer's name is the bot's
# input, and a name such as "=HYPERLINK(...)" must stay text when the agent opens the CSV.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def agent_page(view):
    """Only for active agents (others get a page saying so); times in the agent's zone."""

    @login_required
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        agent = Agent.objects.filter(
            user=request.user, account_state=Agent.AccountState.ACTIVE
        ).first()
        if agent is None:
            return render(request, "agents/not_an_agent.html", status=403)
        request.agent = agent
        with timezone.override(selectors.agent_zone(agent)):
            return view(request, *args, **kwargs)

    return wrapper


def duration_text(value: timedelta) -> str:
    seconds = max(int(value.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def language_text(language: AgentLanguage) -> str:
    known = pycountry.languages.get(alpha_2=language.code)
    text = f"{known.name} ({language.code})" if known else language.code
    return text if language.is_primary else f"{text}, secondary"


def spreadsheet_safe(value: str) -> str:
    return f"'{value}" if value.startswith(FORMULA_PREFIXES) else value


def page_of(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


@require_GET
@agent_page
def home(request):
    agent = request.agent
    return render(
        request,
        "agents/portal.html",
        {
            "section": "workspace",
            "agent": agent,
            "active_tickets": selectors.agent_active_ticket_count(agent=agent),
            "today": selectors.agent_today(agent=agent, now=timezone.now()),
            "server_time_ms": round(timezone.now().timestamp() * 1000),
        },
    )


@require_GET
@agent_page
def today(request):
    """The home page's day figures, re-fetched by htmx after the agent resolves a ticket."""
    agent = request.agent
    return render(
        request,
        "agents/_today.html",
        {"agent": agent, "today": selectors.agent_today(agent=agent, now=timezone.now())},
    )


@require_GET
@agent_page
def history(request):
    agent = request.agent
    page = page_of(request, selectors.agent_resolved_tickets(agent=agent))
    for ticket in page:
        ticket.handling_text = duration_text(ticket.handling)
    return render(
        request,
        "agents/history.html",
        {
            "section": "history",
            "agent": agent,
            "page": page,
            "csat": selectors.agent_csat(agent=agent),
        },
    )


@require_GET
@agent_page
def earnings(request):
    agent = request.agent
    weeks = selectors.agent_earnings_by_week(agent=agent)
    monday = timezone.localdate() - timedelta(days=timezone.localdate().weekday())
    this_week = next(
        (week for week in weeks if week.week_start == monday),
        selectors.WeekEarnings(week_start=monday, resolved=0, earned=Decimal("0.00")),
    )
    return render(
        request,
        "agents/earnings.html",
        {
            "section": "earnings",
            "agent": agent,
            "weeks": weeks,
            "this_week": this_week,
            "total": sum((week.earned for week in weeks), Decimal("0.00")),
            "page": page_of(request, selectors.agent_resolved_tickets(agent=agent)),
        },
    )


@require_GET
@agent_page
def earnings_csv(request):
    agent = request.agent
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="earnings.csv"'
    writer = csv.writer(response)
    writer.writerow(
        ["resolved_at", "week_of", "ticket_id", "customer", "outcome", "handling_seconds", "earned"]
    )
    for ticket in selectors.agent_resolved_tickets(agent=agent).iterator():
        resolved = timezone.localtime(ticket.resolved_at)
        writer.writerow(
            [
                resolved.isoformat(),
                (resolved.date() - timedelta(days=resolved.weekday())).isoformat(),
                ticket.id,
                spreadsheet_safe(ticket.customer_name),
                ticket.outcome,
                int(ticket.handling.total_seconds()),
                agent.pay_rate,
            ]
        )
    return response


def availability_response(request, form: AvailabilityForm, status: int = 200):
    agent = request.agent
    template = "agents/_availability.html" if request.htmx else "agents/availability.html"
    context = {
        "section": "availability",
        "agent": agent,
        "form": form,
        "windows": selectors.agent_availability(agent=agent),
    }
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
@agent_page
def availability(request):
    agent = request.agent
    if request.method == "GET":
        return availability_response(request, AvailabilityForm(agent=agent))
    with transaction.atomic():
        # Held until the new windows are written, so two tabs adding at once cannot both pass
        # the overlap check.
        lock_agent(agent.pk)
        form = AvailabilityForm(request.POST, agent=agent)
        saved = form.is_valid()
        if saved:
            form.save()
    if not saved:
        return availability_response(request, form)
    if not request.htmx:
        messages.success(request, "Availability saved.")
        return redirect("portal-availability")
    return availability_response(request, AvailabilityForm(agent=agent))


@require_POST
@agent_page
def availability_remove(request, window_id: int):
    agent = request.agent
    get_object_or_404(AgentAvailability, pk=window_id, agent=agent).delete()
    if not request.htmx:
        messages.success(request, "Availability saved.")
        return redirect("portal-availability")
    return availability_response(request, AvailabilityForm(agent=agent))


@require_http_methods(["GET", "POST"])
@agent_page
def profile(request):
    agent = request.agent
    saved = False
    if request.method == "POST":
        form = ProfileForm(request.POST, instance=agent)
        if form.is_valid():
            form.save()
            if not request.htmx:
                messages.success(request, "Profile saved.")
                return redirect("portal-profile")
            saved = True
    else:
        form = ProfileForm(instance=agent)
    template = "agents/_profile_form.html" if request.htmx else "agents/profile.html"
    context = {
        "section": "profile",
        "agent": agent,
        "form": form,
        "saved": saved,
        "languages": [language_text(language) for language in agent.languages.all()],
    }
    return render(request, template, context)
