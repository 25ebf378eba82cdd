"""What routing reads on every step, in hand-written SQL: a ticket's eligible agents with their
scoring inputs, the waiting tickets an agent may take, a locked agent's room, whether a drain
of an agent could offer anything, and what an offer's frame shows of its ticket.

Routing reads the first on every step and a drain on every ticket it offers; a drain reads the
second once; both re-read the room of the agent they lock. Written with the ORM, these
statements cost Django more to build and compile than PostgreSQL took to run them (~12 of a
~26 ms routing step over 50 agents for the first), so they are written here once, per database
vendor, and only their parameters change from call to call.

The statement applies the hard filters (routable: active, available, connected and under
capacity; speaks the ticket's language, as a primary language until the language step relaxes
it; holds every skill the ticket needs at the required proficiency; never declined, missed or
released it), reads each eligible agent's inputs to dispatch.scoring (load, ratings in the
quality window as counted in AgentRatings, mean proficiency in the ticket's skills), the pool's
mean CSAT (from the same counts) and highest pay rate, and the earliest idle_since among the
eligible agents, and orders them by dispatch.scoring's total computed in SQL. That total only
orders and cuts the list: the scores routing records are computed by dispatch.scoring from the
columns read, and tests hold the two orders equal.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents.models import Agent
from tickets.models import Message, Ticket

from . import scoring
from .models import DispatchPolicy, Offer

# Each vendor's spelling of what the statement needs beyond standard SQL.
_DIALECTS = {
    "postgresql": {
        "float": "double precision",
        "epoch": "date_part('epoch', {})",
        "greatest": "GREATEST",
        "materialized": "MATERIALIZED",
        # Exact: since PostgreSQL 14, EXTRACT gives numeric, not a float.
        "epoch_microseconds": "CAST(EXTRACT(EPOCH FROM {0}) * 1000000 AS bigint)",
    },
    "sqlite": {
        "float": "REAL",
        # SQLite keeps datetimes as UTC text; julianday() reads it in days since 4714 BC.
        "epoch": "((julianday({}) - 2440587.5) * 86400.0)",
        "greatest": "MAX",
        # Older SQLite releases do not know the hint; there the common tables are inlined.
        "materialized": "",
        # Exact, from Django's text form 'YYYY-MM-DD HH:MM:SS[.ffffff]': julianday() is a
        # float that cannot tell microseconds apart.
        "epoch_microseconds": (
            "(CAST(strftime('%%s', {0}) AS INTEGER) * 1000000 + CAST(substr({0}, 21) AS INTEGER))"
        ),
    },
}

# The common tables are materialised on PostgreSQL so that each agent's correlated lookups run
# once, not once per reference. The final SELECT leaves what only the kept rows need (their
# ratings and proficiency as read) out of the sort, so PostgreSQL computes those after the
# LIMIT: for `limit` agents, not every eligible one.
_STATEMENT = """
WITH pool AS {materialized} (
    SELECT
        (SELECT CAST(SUM(r.ratings_sum) AS {float}) / NULLIF(SUM(r.ratings_count), 0)
         FROM dispatch_agentratings r) AS csat_mean,
        (SELECT CAST(MAX(a.pay_rate) AS {float}) FROM agents_agent a
         WHERE a.account_state = %(active)s) AS highest_pay_rate
),
needs AS {materialized} (
    SELECT skill_id FROM tickets_ticket_skills WHERE ticket_id = %(ticket)s
),
{eligible}
SELECT e.id, e.capacity, e.pay_rate, e.idle_since, e.created_at, e.load,
    COALESCE(r.ratings_count, 0) AS ratings_count, COALESCE(r.ratings_sum, 0) AS ratings_sum,
    {proficiency} AS proficiency,
    e.earliest_idle, pool.csat_mean, pool.highest_pay_rate
FROM eligible e CROSS JOIN pool LEFT JOIN dispatch_agentratings r ON r.agent_id = e.id
ORDER BY
    %(weight_quality)s * ((COALESCE(
        (COALESCE(pool.csat_mean, %(neutral_csat)s) * %(prior)s + r.ratings_sum)
            / NULLIF(%(prior)s + r.ratings_count, 0),
        COALESCE(pool.csat_mean, %(neutral_csat)s)) - %(csat_lowest)s) / %(csat_span)s)
    + %(weight_proficiency)s
        * COALESCE(({proficiency} - %(proficiency_lowest)s) / %(proficiency_span)s, 1.0)
    + %(weight_idle)s * (CASE WHEN e.idle_since IS NULL OR e.earliest_idle >= %(now)s THEN 1.0
        ELSE {greatest}(%(now_seconds)s - {idle_seconds}, 0.0)
            / (%(now_seconds)s - {earliest_seconds}) END)
    + %(weight_load)s * (1.0 - CAST(e.load AS {float}) / e.capacity)
    + %(weight_cost)s * (CASE WHEN pool.highest_pay_rate > 0
        THEN 1.0 - CAST(e.pay_rate AS {float}) / pool.highest_pay_rate ELSE 1.0 END) DESC,
    e.idle_since ASC NULLS FIRST, e.created_at ASC, e.id ASC
LIMIT %(limit)s
"""

# Whether agent `a` has a connection fresh within the heartbeat time-out.
_CONNECTED = """EXISTS (
        SELECT 1 FROM agents_agentconnection c
        WHERE c.agent_id = a.id AND c.last_heartbeat_at >= %(fresh_since)s)"""

# Agent `a`'s load: assigned tickets plus pending offers.
_LOAD = """((SELECT COUNT(*) FROM tickets_ticket t
         WHERE t.agent_id = a.id AND t.status = %(assigned)s)
        + (SELECT COUNT(*) FROM dispatch_offer o
           WHERE o.agent_id = a.id AND o.status = %(pending)s))"""

# Whether the agent had the ticket before: an offer or a held ticket taken away (the agent went
# offline, a coordinator moved it) is not the agent's choice; a declined, missed or released one
# is, and the ticket never returns to them.
_OFFERED_BEFORE = """EXISTS (
        SELECT 1 FROM dispatch_offer o
        WHERE o.agent_id = {agent} AND o.ticket_id = {ticket} AND o.status <> %(revoked)s
          AND NOT (o.status = %(accepted)s
                   AND o.revoke_reason IN (%(offline)s, %(reassigned)s)))"""

# Whether agent `a` may take the ticket, but for its room: active, available, connected, speaks
# the ticket's language, holds every skill it needs and never declined, missed or released it.
_MAY_TAKE = f"""a.account_state = %(active)s AND a.status = %(available)s
      AND {_CONNECTED}
      AND EXISTS (
        SELECT 1 FROM agents_agentlanguage l
        WHERE l.agent_id = a.id AND l.code = %(language)s AND (l.is_primary OR %(secondary)s))
      AND NOT EXISTS (
        SELECT 1 FROM needs WHERE NOT EXISTS (
            SELECT 1 FROM agents_agentskill s
            WHERE s.agent_id = a.id AND s.skill_id = needs.skill_id
              AND s.proficiency >= %(min_proficiency)s))
      AND NOT {_OFFERED_BEFORE.format(agent="a.id", ticket="%(ticket)s")}"""

# Every eligible agent, with the earliest idle_since among them as a window.
_EVERY_ELIGIBLE = """routable AS {materialized} (
    SELECT a.id, a.capacity, a.pay_rate, a.idle_since, a.created_at, {load} AS load
    FROM agents_agent a
    WHERE {may_take}
),
eligible AS {materialized} (
    SELECT r.*, MIN(r.idle_since) OVER () AS earliest_idle FROM routable r
    WHERE r.load < r.capacity
)"""

# One agent if eligible, with the earliest idle_since among every eligible agent: read in
# idle_since order (an index) up to the first agent eligible, not by checking every agent.
_ONE_ELIGIBLE = """routable AS {materialized} (
    SELECT a.id, a.capacity, a.pay_rate, a.idle_since, a.created_at, {load} AS load
    FROM agents_agent a
    WHERE a.id = %(agent)s AND {may_take}
),
eligible AS {materialized} (
    SELECT r.*, (
        SELECT a.idle_since FROM agents_agent a
        WHERE a.idle_since IS NOT NULL AND {may_take} AND {load} < a.capacity
        ORDER BY a.idle_since LIMIT 1
    ) AS earliest_idle
    FROM routable r
    WHERE r.load < r.capacity
)"""


# The agent's mean proficiency in the ticket's skills; NULL when it needs none. Whether it
# needs any is asked once per statement, so a ticket that needs none (four in ten of the
# benchmark's) reads no agent's skills, not a lookup per eligible agent.
_PROFICIENCY = """CASE WHEN EXISTS (SELECT 1 FROM needs) THEN
    (SELECT CAST(AVG(s.proficiency) AS {float}) FROM agents_agentskill s
     WHERE s.agent_id = e.id AND s.skill_id IN (SELECT skill_id FROM needs)) END"""


# The queued tickets agent %(agent)s may take, in dispatch order: the hard filters of
# _MAY_TAKE seen from the agent's side, each relaxation step applying to the tickets that have
# waited long enough for it. The order is tickets.selectors.tickets_in_dispatch_order's: the
# virtual arrival (creation less priority × aging), then creation, then id, compared in whole
# microseconds so that ties fall exactly as there.
_WAITING_STATEMENT = """
SELECT t.id FROM tickets_ticket t
WHERE t.status = %(queued)s
  AND EXISTS (
    SELECT 1 FROM agents_agentlanguage l
    WHERE l.agent_id = %(agent)s AND l.code = t.language
      AND (l.is_primary OR t.created_at <= %(language_relaxed_since)s))
  AND NOT EXISTS (
    SELECT 1 FROM tickets_ticket_skills needs
    WHERE needs.ticket_id = t.id AND NOT EXISTS (
        SELECT 1 FROM agents_agentskill s
        WHERE s.agent_id = %(agent)s AND s.skill_id = needs.skill_id
          AND (s.proficiency >= %(min_proficiency)s
               OR t.created_at <= %(proficiency_relaxed_since)s)))
  AND NOT {offered_before}
ORDER BY {created_microseconds} - t.priority * %(aging_microseconds)s, t.created_at, t.id
LIMIT %(limit)s
"""

# One agent's room, re-read under its lock: its load and whether it is connected, read at the
# same instant.
_ROOM_STATEMENT = f"SELECT {_LOAD}, {_CONNECTED} FROM agents_agent a WHERE a.id = %(agent)s"


# Whether a drain of the agent could offer anything, read once a capacity event has committed:
# a ticket is queued, and the agent is active, available and under capacity (the drain checks
# its connection under its lock). NULL for an agent that no longer exists.
_DRAIN_WANTED_STATEMENT = f"""SELECT a.account_state = %(active)s AND a.status = %(available)s
    AND {_LOAD} < a.capacity
    AND EXISTS (SELECT 1 FROM tickets_ticket t WHERE t.status = %(queued)s)
FROM agents_agent a WHERE a.id = %(agent)s"""

# What an offer's frame shows of its ticket beyond the ticket's own row: its skills and its
# conversation. Read through the ORM, an offer's frame cost 0.7 ms of CPU on PostgreSQL, nearly
# all of it Django building these two statements; read by hand, 0.2 ms.
_OFFERED_SKILLS_STATEMENT = """SELECT s.slug FROM agents_skill s
JOIN tickets_ticket_skills needs ON needs.skill_id = s.id
WHERE needs.ticket_id = %(ticket)s"""
_OFFERED_TRANSCRIPT_STATEMENT = """SELECT m.id, m.role, m.text, m.sent_at FROM tickets_message m
WHERE m.ticket_id = %(ticket)s ORDER BY m.position"""


@cache
def _statement(vendor: str, *, one_agent: bool) -> str:
    dialect = _DIALECTS[vendor]
    eligible = (_ONE_ELIGIBLE if one_agent else _EVERY_ELIGIBLE).format(
        materialized=dialect["materialized"], load=_LOAD, may_take=_MAY_TAKE
    )
    return _STATEMENT.format(
        eligible=eligible,
        proficiency=_PROFICIENCY.format(float=dialect["float"]),
        float=dialect["float"],
        materialized=dialect["materialized"],
        greatest=dialect["greatest"],
        idle_seconds=dialect["epoch"].format("e.idle_since"),
        earliest_seconds=dialect["epoch"].format("e.earliest_idle"),
    )


@dataclass(frozen=True)
class Row:
    """One eligible agent as read, with the pool it is measured against."""

    agent_id: uuid.UUID
    capacity: int
    pay_rate: Decimal | float
    idle_since: datetime | None
    created_at: datetime
    load: int
    ratings_count: int
    ratings_sum: int
    proficiency: float | None
    earliest_idle: datetime | None
    pool: scoring.Pool

    def inputs(self, *, now: datetime) -> scoring.CandidateInputs:
        return scoring.CandidateInputs(
            ratings_count=self.ratings_count,
            ratings_sum=self.ratings_sum,
            proficiency=self.proficiency,
            idle_seconds=(
                (now - self.idle_since).total_seconds() if self.idle_since is not None else None
            ),
            load=self.load,
            capacity=self.capacity,
            pay_rate=float(self.pay_rate),
        )

    def longest_idle_seconds(self, *, now: datetime) -> float:
        """The longest idle among the eligible agents who had work, since the earliest
        idle_since among them; 0 when none had."""
        if self.earliest_idle is None:
            return 0.0
        return (now - self.earliest_idle).total_seconds()


@dataclass(frozen=True)
class Eligibility:
    """The hard filters' thresholds for one ticket at one moment, relaxed as it waits."""

    min_proficiency: int
    secondary_languages: bool


def ticket_eligibility(*, ticket: Ticket, now: datetime, policy: DispatchPolicy) -> Eligibility:
    """The relaxation steps: from relax_proficiency_after_seconds of waiting any proficiency in
    the ticket's skills will do, from relax_language_after_seconds a secondary language too."""
    waited = (now - ticket.created_at).total_seconds()
    return Eligibility(
        min_proficiency=(
            1 if waited >= policy.relax_proficiency_after_seconds else policy.min_proficiency
        ),
        secondary_languages=waited >= policy.relax_language_after_seconds,
    )


def _datetime(value) -> datetime | None:
    """A datetime as the driver returns it: aware from PostgreSQL, UTC text from SQLite."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def agent_load_and_connected_read(
    *, agent: Agent, now: datetime, policy: DispatchPolicy
) -> tuple[int, bool]:
    """The agent's load (assigned tickets plus pending offers) and whether it has a connection
    fresh within the heartbeat time-out, in one statement."""
    fresh_since = now - timedelta(seconds=policy.heartbeat_timeout_seconds)
    with connection.cursor() as cursor:
        cursor.execute(
            _ROOM_STATEMENT,
            {
                "agent": Agent._meta.pk.get_db_prep_value(agent.pk, connection),
                "assigned": Ticket.Status.ASSIGNED.value,
                "pending": Offer.Status.PENDING.value,
                "fresh_since": connection.ops.adapt_datetimefield_value(fresh_since),
            },
        )
        load, connected = cursor.fetchone()
    return load, bool(connected)


def drain_wanted_read(*, agent_id: uuid.UUID) -> bool:
    """Whether a ticket waits and the agent has room to be offered it, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            _DRAIN_WANTED_STATEMENT,
            {
                "agent": Agent._meta.pk.get_db_prep_value(agent_id, connection),
                "active": Agent.AccountState.ACTIVE.value,
                "available": Agent.Status.AVAILABLE.value,
                "assigned": Ticket.Status.ASSIGNED.value,
                "pending": Offer.Status.PENDING.value,
                "queued": Ticket.Status.QUEUED.value,
            },
        )
        row = cursor.fetchone()
    return row is not None and bool(row[0])


def offered_ticket_read(*, ticket_id: uuid.UUID) -> tuple[list[str], list[Message]]:
    """The ticket's skill slugs, in no order, and its messages in the conversation's order."""
    params = {"ticket": Ticket._meta.pk.get_db_prep_value(ticket_id, connection)}
    with connection.cursor() as cursor:
        cursor.execute(_OFFERED_SKILLS_STATEMENT, params)
        slugs = [slug for (slug,) in cursor.fetchall()]
        cursor.execute(_OFFERED_TRANSCRIPT_STATEMENT, params)
        rows = cursor.fetchall()
    to_uuid = Message._meta.pk.to_python
    transcript = [
        Message(
            id=to_uuid(message_id),
            ticket_id=ticket_id,
            role=role,
            text=text,
            sent_at=_datetime(sent_at),
        )
        for message_id, role, text, sent_at in rows
    ]
    return slugs, transcript


@cache
def _waiting_statement(vendor: str) -> str:
    epoch_microseconds = _DIALECTS[vendor]["epoch_microseconds"]
    return _WAITING_STATEMENT.format(
        offered_before=_OFFERED_BEFORE.format(agent="%(agent)s", ticket="t.id"),
        created_microseconds=epoch_microseconds.format("t.created_at"),
    )


def waiting_ticket_ids_read(
    *, agent: Agent, now: datetime, policy: DispatchPolicy, limit: int
) -> list[uuid.UUID]:
    """The first `limit` queued tickets this agent may take, in dispatch order."""
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        "agent": Agent._meta.pk.get_db_prep_value(agent.pk, connection),
        "queued": Ticket.Status.QUEUED.value,
        "language_relaxed_since": adapt(
            now - timedelta(seconds=policy.relax_language_after_seconds)
        ),
        "proficiency_relaxed_since": adapt(
            now - timedelta(seconds=policy.relax_proficiency_after_seconds)
        ),
        "min_proficiency": policy.min_proficiency,
        "revoked": Offer.Status.REVOKED.value,
        "accepted": Offer.Status.ACCEPTED.value,
        "offline": Offer.RevokeReason.OFFLINE.value,
        "reassigned": Offer.RevokeReason.REASSIGNED.value,
        "aging_microseconds": policy.aging_seconds_per_priority * 1_000_000,
        "limit": limit,
    }
    with connection.cursor() as cursor:
        cursor.execute(_waiting_statement(connection.vendor), params)
        return [Ticket._meta.pk.to_python(ticket_id) for (ticket_id,) in cursor.fetchall()]


def eligible_agents_read(
    *,
    ticket: Ticket,
    now: datetime,
    policy: DispatchPolicy,
    limit: int,
    agent_id: uuid.UUID | None = None,
) -> list[Row]:
    """The `limit` eligible agents for this ticket that score best in SQL, best first; with
    `agent_id`, only that agent (if eligible), measured against every eligible agent."""
    eligibility = ticket_eligibility(ticket=ticket, now=now, policy=policy)
    ops = connection.ops
    params = {
        "ticket": Ticket._meta.pk.get_db_prep_value(ticket.pk, connection),
        "language": ticket.language,
        "secondary": eligibility.secondary_languages,
        "min_proficiency": eligibility.min_proficiency,
        "fresh_since": ops.adapt_datetimefield_value(
            now - timedelta(seconds=policy.heartbeat_timeout_seconds)
        ),
        "now": ops.adapt_datetimefield_value(now),
        "now_seconds": now.timestamp(),
        "active": Agent.AccountState.ACTIVE.value,
        "available": Agent.Status.AVAILABLE.value,
        "assigned": Ticket.Status.ASSIGNED.value,
        "pending": Offer.Status.PENDING.value,
        "revoked": Offer.Status.REVOKED.value,
        "accepted": Offer.Status.ACCEPTED.value,
        "offline": Offer.RevokeReason.OFFLINE.value,
        "reassigned": Offer.RevokeReason.REASSIGNED.value,
        "neutral_csat": scoring.NEUTRAL_CSAT,
        "prior": policy.quality_prior_ratings,
        "csat_lowest": float(scoring.CSAT_LOWEST),
        "csat_span": float(scoring.CSAT_HIGHEST - scoring.CSAT_LOWEST),
        "proficiency_lowest": float(scoring.PROFICIENCY_LOWEST),
        "proficiency_span": float(scoring.PROFICIENCY_HIGHEST - scoring.PROFICIENCY_LOWEST),
        "weight_quality": policy.weight_quality,
        "weight_proficiency": policy.weight_proficiency,
        "weight_idle": policy.weight_idle,
        "weight_load": policy.weight_load,
        "weight_cost": policy.weight_cost,
        "limit": limit,
    }
    if agent_id is not None:
        params["agent"] = Agent._meta.pk.get_db_prep_value(agent_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_statement(connection.vendor, one_agent=agent_id is not None), params)
        rows = cursor.fetchall()
    to_uuid = Agent._meta.pk.to_python
    return [
        Row(
            agent_id=to_uuid(agent),
            capacity=capacity,
            pay_rate=pay_rate,
            idle_since=_datetime(idle_since),
            created_at=_datetime(created_at),
            load=load,
            ratings_count=ratings_count,
            ratings_sum=ratings_sum,
            proficiency=proficiency,
            earliest_idle=_datetime(earliest_idle),
            pool=scoring.Pool(
                csat_mean=csat_mean,
                prior_ratings=policy.quality_prior_ratings,
                highest_pay_rate=highest_pay_rate or 0.0,
            ),
        )
        for (
            agent,
            capacity,
            pay_rate,
            idle_since,
            created_at,
            load,
            ratings_count,
            ratings_sum,
            proficiency,
            earliest_idle,
            csat_mean,
            highest_pay_rate,
        ) in rows
    ]
