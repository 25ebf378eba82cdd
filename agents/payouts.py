"""Payouts: what each agent earned in a period, for the coordinators who pay them.

The figures are the portal's earnings (agents.selectors): an agent is paid its current pay rate
for every ticket it resolved, whatever the outcome. Days and ISO weeks (Monday to Sunday) are
the agent's own, in its time zone, so an agent's week here is the week on its earnings page.
Handled time runs from the (last) assignment to the resolution, as in the agent's history.
"""

import calendar
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django import forms
from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone

from tickets.models import Ticket

from .models import Agent
from .selectors import agent_local_day, agent_pay, agent_zone

# A longer period is refused: a payout run covers a month or a few, never years at once.
LONGEST_PERIOD_DAYS = 366

# An ISO week as an <input type="week"> sends it.
ISO_WEEK = re.compile(r"(\d{4})-W(\d{2})")

# Every time zone is within 14 hours of UTC, so a ticket resolved on an agent's local day lies
# within a day either side of that UTC day.
LOCAL_DAY_MARGIN = timedelta(days=1)


def minutes(seconds: int) -> Decimal:
    """Seconds as minutes, to a tenth."""
    return (Decimal(seconds) / 60).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class PayoutRow:
    """One agent's figures for the period, or for one ISO week of it (clipped to the period)."""

    agent: Agent
    start: date
    end: date
    resolved: int
    handled_seconds: int
    amount: Decimal
    by_week: bool = False

    @property
    def iso_week(self) -> str:
        if not self.by_week:
            return ""
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def handled_minutes(self) -> Decimal:
        return minutes(self.handled_seconds)


@dataclass(frozen=True)
class Payouts:
    start: date
    end: date
    by_week: bool
    rows: list[PayoutRow]

    @property
    def resolved(self) -> int:
        return sum(row.resolved for row in self.rows)

    @property
    def handled_minutes(self) -> Decimal:
        return minutes(sum(row.handled_seconds for row in self.rows))

    @property
    def amount(self) -> Decimal:
        return sum((row.amount for row in self.rows), Decimal("0.00"))


def _agents_with_resolutions_around(*, start: date, end: date) -> list[Agent]:
    """Agents who resolved a ticket in or near the period (a superset, whatever their zone)."""
    window_start = datetime.combine(start, time.min, tzinfo=UTC) - LOCAL_DAY_MARGIN
    window_end = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC) + LOCAL_DAY_MARGIN
    resolved = Ticket.objects.filter(
        status=Ticket.Status.RESOLVED, resolved_at__gte=window_start, resolved_at__lt=window_end
    )
    return list(
        Agent.objects.filter(pk__in=resolved.values("agent"))
        .select_related("user")
        .order_by("display_name", "pk")
    )


def payouts_for(*, start: date, end: date, by_week: bool = False) -> Payouts:
    """Per agent (and per ISO week with `by_week`): tickets resolved from `start` to `end`
    inclusive on the agent's own calendar, minutes handled, and the amount earned.

    One query for the agents and one per time zone among them, however many agents there are.
    """
    agents = _agents_with_resolutions_around(start=start, end=end)
    by_zone: dict[str, list[Agent]] = defaultdict(list)
    for agent in agents:
        by_zone[agent.time_zone].append(agent)
    figures: dict = defaultdict(list)
    for zone_agents in by_zone.values():
        # Every agent of the group shares the zone, so its first one gives the local days.
        first = zone_agents[0]
        tickets = Ticket.objects.filter(
            status=Ticket.Status.RESOLVED,
            agent__in=zone_agents,
            resolved_at__gte=agent_local_day(agent=first, day=start)[0],
            resolved_at__lt=agent_local_day(agent=first, day=end)[1],
        )
        groups = ["agent"]
        if by_week:
            tickets = tickets.annotate(week=TruncWeek("resolved_at", tzinfo=agent_zone(first)))
            groups.append("week")
        for row in (
            tickets.order_by()
            .values(*groups)
            .annotate(
                resolved=Count("pk"),
                handled=Sum(
                    ExpressionWrapper(
                        F("resolved_at") - F("assigned_at"), output_field=DurationField()
                    )
                ),
            )
        ):
            figures[row["agent"]].append(row)
    rows = []
    for agent in agents:
        for row in sorted(figures[agent.pk], key=lambda row: row.get("week") or start):
            week = row["week"].date() if by_week else None
            rows.append(
                PayoutRow(
                    agent=agent,
                    start=max(week, start) if week else start,
                    end=min(week + timedelta(days=6), end) if week else end,
                    resolved=row["resolved"],
                    handled_seconds=int(row["handled"].total_seconds()),
                    amount=agent_pay(agent=agent, resolved=row["resolved"]),
                    by_week=by_week,
                )
            )
    return Payouts(start=start, end=end, by_week=by_week, rows=rows)


class PayoutPeriodForm(forms.Form):
    """The period of a payout run: a date range (by default the current month) or one ISO
    week; the rows per agent, or per agent and ISO week."""

    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    week = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"type": "week"}),
        help_text="An ISO week such as 2026-W48, instead of a date range.",
    )
    by_week = forms.BooleanField(required=False, label="One row per agent and ISO week")

    def clean_week(self) -> date | None:
        """The Monday of the week given, if any."""
        value = self.cleaned_data["week"]
        if not value:
            return None
        match = ISO_WEEK.fullmatch(value)
        try:
            if match is None:
                raise ValueError
            return date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise forms.ValidationError(
                "Give the week as an ISO week that exists, such as 2026-W48."
            ) from None

    def clean(self) -> dict:
        cleaned = super().clean()
        start, end, monday = cleaned.get("start"), cleaned.get("end"), cleaned.get("week")
        if self.errors:
            return cleaned
        if monday is not None:
            if start or end:
                raise forms.ValidationError("Give either a week or a date range, not both.")
            cleaned["start"], cleaned["end"] = monday, monday + timedelta(days=6)
            return cleaned
        # A missing end is the end of the start's month, a missing start the first of the
        # end's month: with neither, the current month.
        start = start or (end or timezone.localdate()).replace(day=1)
        end = end or start.replace(day=calendar.monthrange(start.year, start.month)[1])
        if end < start:
            raise forms.ValidationError("The period must end on or after its first day.")
        if (end - start).days >= LONGEST_PERIOD_DAYS:
            raise forms.ValidationError(
                f"The period may be at most {LONGEST_PERIOD_DAYS} days long."
            )
        cleaned["start"], cleaned["end"] = start, end
        return cleaned

    def period(self) -> dict:
        """The payouts_for arguments of a valid form."""
        return {
            "start": self.cleaned_data["start"],
            "end": self.cleaned_data["end"],
            "by_week": self.cleaned_data["by_week"],
        }
