"""How routing ranks the agents who may take a ticket: pure functions over plain values.

An agent's score for a ticket is the weighted sum of five parts, each normalised to 0..1 with
1 the best; the weights are the dispatch policy's.

- quality: the mean CSAT (1-5) of the agent's tickets resolved in the quality window, shrunk
  toward the pool's mean (see shrunk_quality); (quality - 1) / 4.
- proficiency: the mean proficiency (1-5) in the ticket's skills; (proficiency - 1) / 4, and 1
  for a ticket that needs no skill.
- idle: seconds since the agent last received work, over the longest idle time among the
  candidates; 1 for an agent who never had work.
- load: 1 - (assigned tickets + pending offers) / capacity.
- cost: 1 - pay rate / the highest pay rate among active agents; 1 when no one is paid.

dispatch.candidates computes the same total in SQL to keep only the best candidates of a large
pool; a test holds its cut to the order these scores give.
"""

from dataclasses import dataclass

CSAT_LOWEST, CSAT_HIGHEST = 1, 5
PROFICIENCY_LOWEST, PROFICIENCY_HIGHEST = 1, 5

# The pool's mean when nobody has a rating yet: the middle of the scale. Every agent then gets
# the same quality, so the constant never decides a choice.
NEUTRAL_CSAT = 3.0

# Scores are compared and stored at this precision, so that equal inputs reached through
# different float sums tie exactly, and a coordinator reads 0.85, not 0.8500000000000001.
PRECISION = 6

PARTS = ("quality", "proficiency", "idle", "load", "cost")


@dataclass(frozen=True)
class Weights:
    quality: float
    proficiency: float
    idle: float
    load: float
    cost: float


@dataclass(frozen=True)
class Pool:
    """What an agent is measured against: the pool's mean CSAT in the quality window (None
    when there is no rating), how many ratings' worth of it each agent starts with, and the
    highest pay rate among active agents."""

    csat_mean: float | None
    prior_ratings: int
    highest_pay_rate: float


@dataclass(frozen=True)
class CandidateInputs:
    """One agent's raw inputs for one ticket.

    `proficiency` is None when the ticket needs no skill; `idle_seconds` is None for an agent
    who never received work, which counts as the longest idle of all.
    """

    ratings_count: int
    ratings_sum: int
    proficiency: float | None
    idle_seconds: float | None
    load: int
    capacity: int
    pay_rate: float


@dataclass(frozen=True)
class Score:
    total: float
    parts: dict[str, float]


def shrunk_quality(
    *, ratings_sum: int, ratings_count: int, prior_mean: float, prior_ratings: int
) -> float:
    """The agent's mean CSAT blended with `prior_ratings` pseudo-ratings at the pool mean.

    An agent with one lucky 5 is not ranked above one with fifty 4.8s: few ratings say little,
    so they move the estimate only a little away from the pool.
    """
    if ratings_count + prior_ratings == 0:
        return prior_mean
    return (prior_mean * prior_ratings + ratings_sum) / (prior_ratings + ratings_count)


def _on_scale(value: float, lowest: int, highest: int) -> float:
    return (value - lowest) / (highest - lowest)


def normalised_parts(
    candidate: CandidateInputs, *, pool: Pool, longest_idle_seconds: float
) -> dict[str, float]:
    """The candidate's five parts on 0..1, best 1, before weighting."""
    prior_mean = pool.csat_mean if pool.csat_mean is not None else NEUTRAL_CSAT
    quality = shrunk_quality(
        ratings_sum=candidate.ratings_sum,
        ratings_count=candidate.ratings_count,
        prior_mean=prior_mean,
        prior_ratings=pool.prior_ratings,
    )
    if candidate.proficiency is None:
        proficiency = 1.0
    else:
        proficiency = _on_scale(candidate.proficiency, PROFICIENCY_LOWEST, PROFICIENCY_HIGHEST)
    if candidate.idle_seconds is None or longest_idle_seconds <= 0:
        idle = 1.0
    else:
        idle = max(candidate.idle_seconds, 0.0) / longest_idle_seconds
    load = 1 - min(candidate.load / candidate.capacity, 1.0) if candidate.capacity else 0.0
    cost = 1 - candidate.pay_rate / pool.highest_pay_rate if pool.highest_pay_rate > 0 else 1.0
    return {
        "quality": _on_scale(quality, CSAT_LOWEST, CSAT_HIGHEST),
        "proficiency": proficiency,
        "idle": idle,
        "load": load,
        "cost": cost,
    }


def score(
    candidate: CandidateInputs, *, weights: Weights, pool: Pool, longest_idle_seconds: float
) -> Score:
    """The candidate's weighted parts and their sum."""
    normalised = normalised_parts(candidate, pool=pool, longest_idle_seconds=longest_idle_seconds)
    weighted = {part: getattr(weights, part) * normalised[part] for part in PARTS}
    return Score(
        total=round(sum(weighted.values()), PRECISION),
        parts={part: round(value, PRECISION) for part, value in weighted.items()},
    )
