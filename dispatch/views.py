"""The coordinators' pages: the live board and coverage, for staff only.

The board is server-rendered; board.js listens on /ws/board/ and, on any frame, has htmx fetch
the figures fragment again (debounced by htmx's trigger delay), so the page never reloads.
"""

import functools
import math
import zoneinfo
from datetime import datetime, timedelta
from urllib.parse import urlencode

import pygal
from django import forms
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render, resolve_url
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseClientRedirect
from pygal.style import Style

from agents.models import time_zone_names

from . import board, coverage
from .models import BoardSample, DispatchPolicy

CHART_HOURS = 6
CHART_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#1f2430",
    foreground_strong="#1f2430",
    foreground_subtle="#d9dde5",
    colors=("#2457c5",),
    font_family="system-ui, sans-serif",
)


def staff_page(view):
    """Only for staff: anyone else logged in gets 403, anyone logged out the login page."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            if request.htmx:
                # A fragment the open board fetched after the session ended: the whole page
                # goes to the log-in, and back to the board after it.
                next_url = request.htmx.current_url_abs_path or request.path
                return HttpResponseClientRedirect(
                    f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': next_url})}"
                )
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def _figures_context() -> dict:
    return {"figures": board.board_figures(now=timezone.now(), policy=DispatchPolicy.load())}


# Each chart: the field of BoardSample it draws, and its title.
CHARTS = {"queue": ("queue_depth", "Tickets waiting"), "agents": ("agents_online", "Agents online")}


def history_chart(
    *, title: str, samples: list[BoardSample], field: str, since: datetime, until: datetime
) -> str:
    """A line chart of one sampled figure from `since` to `until`, as an SVG document drawn
    by pygal; the y axis starts at 0."""
    zone = timezone.get_current_timezone()
    chart = pygal.DateTimeLine(
        title=title,
        style=CHART_STYLE,
        width=600,
        height=260,
        show_legend=False,
        show_dots=False,
        fill=True,
        xrange=(since.timestamp(), until.timestamp()),
        x_value_formatter=lambda moment: moment.astimezone(zone).strftime("%H:%M"),
        # No tooltip script from pygal's CDN: the board loads nothing from other hosts.
        js=[],
        no_data_text="No samples yet",
    )
    if samples:
        # Whole numbers on the y axis, from 0, about five of them: these are counts.
        highest = max(getattr(sample, field) for sample in samples)
        step = max(math.ceil(highest / 5), 1)
        chart.config.y_labels = list(range(0, highest + step, step))
        chart.add(title, [(sample.taken_at, getattr(sample, field)) for sample in samples])
    else:
        # pygal draws the axes even with nothing to plot; their labels would be made up.
        chart.config.show_x_labels = chart.config.show_y_labels = False
    return chart.render(is_unicode=True)


def _charts_context() -> dict:
    # The charts are images: a new address each time this fragment is fetched redraws them.
    return {"chart_hours": CHART_HOURS, "drawn_at": int(timezone.now().timestamp())}


@require_GET
@staff_page
def board_page(request):
    return render(
        request,
        "dispatch/board.html",
        {"section": "board", **_figures_context(), **_charts_context()},
    )


@require_GET
@staff_page
def board_figures(request):
    return render(request, "dispatch/_figures.html", _figures_context())


@require_GET
@staff_page
def board_charts(request):
    return render(request, "dispatch/_charts.html", _charts_context())


@require_GET
@staff_page
def board_chart(request, chart: str):
    """One history chart as an SVG image: shown with <img>, pygal's inline configuration
    script never runs in the board's page."""
    if chart not in CHARTS:
        raise Http404("No such chart.")
    field, title = CHARTS[chart]
    now = timezone.now()
    samples = board.board_history(now=now, hours=CHART_HOURS)
    svg = history_chart(
        title=title,
        samples=samples,
        field=field,
        since=now - timedelta(hours=CHART_HOURS),
        until=now,
    )
    return HttpResponse(svg, content_type="image/svg+xml")


class CoverageForm(forms.Form):
    tz = forms.CharField(label="Time zone", max_length=64)
    per_agent = forms.IntegerField(
        label="Escalations one agent handles per hour", min_value=1, max_value=60
    )

    def clean_tz(self) -> str:
        name = self.cleaned_data["tz"]
        if name not in time_zone_names():
            raise forms.ValidationError(f"{name} is not a known time zone (e.g. Europe/Berlin).")
        return name


@require_GET
@staff_page
def coverage_page(request):
    # Bound with the defaults under the query, so that the form shows the values in use.
    defaults = {"tz": settings.TIME_ZONE, "per_agent": coverage.DEFAULT_PER_AGENT}
    form = CoverageForm({**defaults, **request.GET.dict()})
    if not form.is_valid():
        return render(
            request, "dispatch/coverage.html", {"section": "coverage", "form": form}, status=400
        )
    zone = zoneinfo.ZoneInfo(form.cleaned_data["tz"])
    report = coverage.coverage(
        now=timezone.now(), zone=zone, per_agent=form.cleaned_data["per_agent"]
    )
    calendars = [(language, report.days(language)) for language in report.languages]
    return render(
        request,
        "dispatch/coverage.html",
        {
            "section": "coverage",
            "form": form,
            "report": report,
            "calendars": calendars,
            "hours": range(24),
        },
    )
