"""Coverage: for the next 7 days, hour by hour in the coordinator's time zone and language by
language, how many freelancers declared they would be working, against the demand seen in the
same hours of past weeks.

- *Slots*: the 168 hours from the start of the current hour, each one real hour long; each is
  shown at its wall-clock time in the coordinator's zone (on a daylight-saving change a day has
  23 or 25 of them).
- *Agents*: active agents who speak the language as a primary language (those routing offers a
  ticket to at once) and whose availability covers at least half of the slot (30 of its 60
  minutes). Availability windows are weekly wall-clock times in each agent's own zone, turned
  into instants date by date with zoneinfo, so a window keeps its local hours across
  daylight-saving changes in either zone.
- *Demand*: the mean number of escalations per hour in that language in the same weekday and
  wall-clock hour of each of the last 4 weeks (the four slots 1 to 4 weeks before, in the
  coordinator's zone), missing weeks counting as 0; the current hour counts with the
  escalations it has had so far.
- *Needed*: ⌈demand / per_agent⌉ agents, `per_agent` being the escalations one agent handles in
  an hour (DEFAULT_PER_AGENT, or the coordinator's figure).
- *Gap*: demand above 0 and fewer agents than needed (so an hour with any demand and no agent
  is always a gap).
"""

import math
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from django.db.models import Count
from django.db.models.functions import TruncHour

from agents.models import Agent, AgentAvailability
from tickets.models import Ticket

HORIZON_HOURS = 7 * 24
DEMAND_WEEKS = 4
DEFAULT_PER_AGENT = 4
# An agent counts toward a slot once its windows cover at least this much of it.
MIN_COVER = timedelta(minutes=30)
SLOT = timedelta(hours=1)


@dataclass(frozen=True)
class Cell:
    """One language in one slot."""

    agents: int
    demand: Fraction
    needed: int

    @property
    def gap(self) -> bool:
        return self.demand > 0 and self.agents < self.needed

    @property
    def demand_per_hour(self) -> float:
        return float(self.demand)

    @property
    def margin(self) -> int:
        return self.agents - self.needed


@dataclass(frozen=True)
class Slot:
    start: datetime  # aware, in the coordinator's zone
    cells: dict[str, Cell]


@dataclass(frozen=True)
class Coverage:
    zone: zoneinfo.ZoneInfo
    per_agent: int
    languages: list[str]
    slots: list[Slot]

    @property
    def gaps(self) -> int:
        return sum(cell.gap for slot in self.slots for cell in slot.cells.values())

    def days(self, language: str) -> list[tuple[date, list[Cell | None]]]:
        """The language's slots as a calendar: one row per local date, one column per
        wall-clock hour (None outside the 7 days). On the night clocks go back, the hour that
        happens twice shows the worse of its two slots; on the night they go forward, the
        skipped hour stays empty."""
        rows: dict[date, list[Cell | None]] = {}
        for slot in self.slots:
            row = rows.setdefault(slot.start.date(), [None] * 24)
            cell = slot.cells[language]
            earlier = row[slot.start.hour]
            if earlier is None or cell.margin < earlier.margin:
                row[slot.start.hour] = cell
        return list(rows.items())


def _merged(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def availability_instants(
    *, windows: list[AgentAvailability], zone: zoneinfo.ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The agent's weekly windows as UTC intervals overlapping [start, end), merged where they
    touch (a shift past midnight is two windows). A window's wall-clock times are read in the
    agent's `zone` on each date, so they follow that zone's daylight-saving changes."""
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    intervals = []
    day: date = first
    while day <= last:
        for window in windows:
            if window.weekday != day.weekday():
                continue
            opens = datetime.combine(day, window.start_time, tzinfo=zone).astimezone(UTC)
            closes = datetime.combine(day, window.end_time, tzinfo=zone).astimezone(UTC)
            if opens < end and closes > start:
                intervals.append((opens, closes))
        day += timedelta(days=1)
    return _merged(intervals)


def _covered(intervals: list[tuple[datetime, datetime]], start: datetime) -> bool:
    end = start + SLOT
    overlaps = [
        min(end, closes) - max(start, opens)
        for opens, closes in intervals
        if opens < end and closes > start
    ]
    return sum(overlaps, timedelta()) >= MIN_COVER


def _demand_counts(
    *, zone: zoneinfo.ZoneInfo, since: datetime, until: datetime
) -> dict[tuple[str, datetime], int]:
    """Escalations per language and wall-clock hour in `zone` (naive keys)."""
    rows = (
        Ticket.objects.filter(created_at__gte=since, created_at__lt=until)
        .annotate(hour=TruncHour("created_at", tzinfo=zone))
        .order_by()
        .values("language", "hour")
        .annotate(n=Count("pk"))
    )
    counts: dict[tuple[str, datetime], int] = {}
    for row in rows:
        key = (row["language"], row["hour"].astimezone(zone).replace(tzinfo=None))
        counts[key] = counts.get(key, 0) + row["n"]
    return counts


def coverage(*, now: datetime, zone: zoneinfo.ZoneInfo, per_agent: int) -> Coverage:
    """The next 7 days' coverage from the current hour in `zone` (four queries)."""
    local_now = now.astimezone(zone)
    first = local_now.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    starts = [first + SLOT * n for n in range(HORIZON_HOURS)]
    horizon_end = starts[-1] + SLOT

    agents = list(
        Agent.objects.filter(account_state=Agent.AccountState.ACTIVE).prefetch_related(
            "availability", "languages"
        )
    )
    speakers: dict[str, list[list[tuple[datetime, datetime]]]] = {}
    for agent in agents:
        intervals = availability_instants(
            windows=list(agent.availability.all()),
            zone=zoneinfo.ZoneInfo(agent.time_zone),
            start=first,
            end=horizon_end,
        )
        for language in agent.languages.all():
            if language.is_primary:
                speakers.setdefault(language.code, []).append(intervals)

    earliest = datetime.combine(
        local_now.date() - timedelta(weeks=DEMAND_WEEKS, days=1), time.min, tzinfo=zone
    )
    demand = _demand_counts(zone=zone, since=earliest, until=now)
    languages = sorted(set(speakers) | {language for language, _ in demand})

    slots = []
    for start in starts:
        wall = start.astimezone(zone).replace(tzinfo=None)
        cells = {}
        for language in languages:
            seen = sum(
                demand.get((language, wall - timedelta(weeks=week)), 0)
                for week in range(1, DEMAND_WEEKS + 1)
            )
            mean = Fraction(seen, DEMAND_WEEKS)
            cells[language] = Cell(
                agents=sum(_covered(intervals, start) for intervals in speakers.get(language, [])),
                demand=mean,
                needed=math.ceil(mean / per_agent),
            )
        slots.append(Slot(start=start.astimezone(zone), cells=cells))
    return Coverage(zone=zone, per_agent=per_agent, languages=languages, slots=slots)
